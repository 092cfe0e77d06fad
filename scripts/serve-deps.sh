#!/bin/sh
# What `make serve` needs to convert documents: LibreOffice, its UNO bridge and poppler (plus AbiWord
# and Gnumeric, a few MB, as second renderers). Installed from Debian's packages when this runs as
# root on a Debian-like system; otherwise one line says how to install them. Never fails: without
# them `convhub serve` starts without its local factory.
set -u

PYTHON=${CONVHUB_UNO_PYTHON:-/usr/bin/python3}

if command -v soffice >/dev/null 2>&1 && command -v pdftoppm >/dev/null 2>&1 && command -v pdfinfo >/dev/null 2>&1 \
    && [ -x "$PYTHON" ] && "$PYTHON" -c 'import uno' >/dev/null 2>&1; then
    exit 0
fi

if [ "$(id -u)" = 0 ] && [ -r /etc/debian_version ] && command -v apt-get >/dev/null 2>&1; then
    echo "make serve: installing LibreOffice and poppler from Debian's packages (once)"
    if CONVHUB_FACTORY_EXTRA_PACKAGES="${CONVHUB_SERVE_EXTRA_PACKAGES-abiword gnumeric}" \
        sh "$(dirname "$0")/install-libreoffice.sh"; then
        exit 0
    fi
    echo "make serve: installing LibreOffice failed (see above); starting without a local factory" >&2
    exit 0
fi

echo "make serve: LibreOffice is not installed, so nothing will convert; install it with \`sudo sh scripts/install-libreoffice.sh\` (Debian/Ubuntu) and run make serve again"
exit 0
