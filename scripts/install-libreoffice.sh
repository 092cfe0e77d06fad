#!/bin/sh
# Install what the reference factory's LibreOffice backend needs (Debian/Ubuntu, run as root).
# Idempotent: does nothing when soffice, the UNO bridge for the system python3 and pdfinfo are
# already present. Extra packages for the example command workers can be named in
# CONVHUB_FACTORY_EXTRA_PACKAGES (space separated), e.g. "gnumeric".
set -eu

PYTHON=${CONVHUB_UNO_PYTHON:-/usr/bin/python3}
PACKAGES="libreoffice-writer-nogui libreoffice-calc-nogui libreoffice-impress-nogui \
python3-uno poppler-utils fonts-dejavu-core fonts-liberation2"
EXTRA=${CONVHUB_FACTORY_EXTRA_PACKAGES:-}

have_all() {
    command -v soffice >/dev/null 2>&1 || return 1
    command -v pdfinfo >/dev/null 2>&1 || return 1
    command -v pdftoppm >/dev/null 2>&1 || return 1
    [ -x "$PYTHON" ] && "$PYTHON" -c 'import uno' >/dev/null 2>&1 || return 1
    for p in $EXTRA; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
    done
    return 0
}

if have_all; then
    echo "install-libreoffice: already installed ($(soffice --version 2>/dev/null | head -n1))"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086  # word splitting of the package lists is wanted
$SUDO apt-get install -y -qq --no-install-recommends $PACKAGES $EXTRA

if ! have_all; then
    echo "install-libreoffice: installed packages but soffice/pdfinfo/uno are still missing" >&2
    exit 1
fi
echo "install-libreoffice: installed $(soffice --version 2>/dev/null | head -n1)"
