#!/bin/sh
# Install Debian's headless-capable Chromium for the ops-page browser tests (idempotent).
# Playwright drives it through executable_path=/usr/bin/chromium; `playwright install` is never needed.
set -eu
if [ -x /usr/bin/chromium ]; then
    echo "chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium
/usr/bin/chromium --version
