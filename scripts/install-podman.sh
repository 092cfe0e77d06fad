#!/bin/sh
# Install podman (with runc, netavark + aardvark-dns for name resolution between compose services),
# debootstrap and poppler-utils from Debian's packages, and podman-compose from PyPI into a tool venv
# (.venv-compose/ at the repository root, kept out of the project's venv). Run as root on Debian 12.
# Idempotent: checks before it installs anything.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PODMAN_COMPOSE_VERSION=${PODMAN_COMPOSE_VERSION:-1.6.0}
TOOLS=${CONVHUB_COMPOSE_VENV:-$ROOT/.venv-compose}
PYTHON=${PYTHON:-python3}

need=""
for cmd in podman runc debootstrap netavark pdfinfo; do
    if [ "$cmd" = netavark ]; then
        [ -x /usr/lib/podman/netavark ] || need="$need netavark aardvark-dns"
    elif ! command -v "$cmd" >/dev/null 2>&1; then
        case $cmd in
            pdfinfo) need="$need poppler-utils" ;;
            *) need="$need $cmd" ;;
        esac
    fi
done
if [ -n "$need" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "install-podman: missing$need; run as root (or: apt-get install$need)" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # podman's recommends (buildah, fuse-overlayfs, dbus-user-session, ...) are not needed as root.
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends podman runc debootstrap netavark aardvark-dns \
        iptables catatonit poppler-utils $need >/dev/null
    echo "install-podman: installed$need"
fi
echo "install-podman: $(podman --version), runc $(runc --version | head -n1 | awk '{print $3}')"

if ! "$TOOLS/bin/podman-compose" version >/dev/null 2>&1 \
    || ! "$TOOLS/bin/pip" show podman-compose 2>/dev/null | grep -qx "Version: $PODMAN_COMPOSE_VERSION"; then
    "$PYTHON" -m venv "$TOOLS"
    "$TOOLS/bin/pip" install -q --disable-pip-version-check "podman-compose==$PODMAN_COMPOSE_VERSION"
fi
echo "install-podman: podman-compose $PODMAN_COMPOSE_VERSION in $TOOLS"
