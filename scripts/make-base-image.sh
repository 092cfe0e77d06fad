#!/bin/sh
# Make the local base image localhost/convhub-base:bookworm by debootstrap of Debian bookworm, for
# machines that reach Debian's mirror but no container registry. Cached: does nothing when the image
# exists (set CONVHUB_BASE_REBUILD=1 to make it again). Run as root; needs podman and debootstrap
# (scripts/install-podman.sh). The mirror is the one apt on this host uses.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${CONVHUB_BASE_IMAGE:-localhost/convhub-base:bookworm}
SUITE=bookworm
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/docker/podman/containers.conf}

if [ "${CONVHUB_BASE_REBUILD:-0}" != 1 ] && podman image exists "$IMAGE"; then
    echo "make-base-image: $IMAGE exists (cached; CONVHUB_BASE_REBUILD=1 makes it again)"
    exit 0
fi

# The first Debian (not security) URI apt uses: deb822 .sources files first, then one-line lists.
mirror_uri() {
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' "$f"
    done
}
MIRROR=${CONVHUB_DEBIAN_MIRROR:-$(mirror_uri | grep -E '/debian/?$' | head -n1)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY=$(mirror_uri | grep -E '/debian-security/?$' | head -n1 || true)
echo "make-base-image: debootstrap $SUITE from $MIRROR${SECURITY:+ (security: $SECURITY)}"

WORK=$(mktemp -d /var/tmp/convhub-base.XXXXXX)
trap 'rm -rf "$WORK"' EXIT INT TERM
DIR=$WORK/rootfs

# minbase: essential packages + apt; ca-certificates so pip can reach PyPI over TLS.
debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$DIR" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }

{
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    [ -n "$SECURITY" ] && echo "deb $SECURITY $SUITE-security main"
} >"$DIR/etc/apt/sources.list"
# Same habits as Debian's official images: no docs/man pages, no cached .debs, no apt lists.
cat >"$DIR/etc/dpkg/dpkg.cfg.d/excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
cat >"$DIR/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
echo 'APT::Install-Recommends "false";' >"$DIR/etc/apt/apt.conf.d/90-no-recommends"

# Trust what this host trusts: a CA this host added (e.g. a TLS-inspecting proxy's, without which
# pip cannot reach PyPI from a build) is copied into the image's local CAs. Debian's own CAs are
# the same in both and are not copied.
HOST_BUNDLE=/etc/ssl/certs/ca-certificates.crt
if [ -f "$HOST_BUNDLE" ]; then
    mkdir -p "$WORK/certs" "$DIR/usr/local/share/ca-certificates"
    awk -v dir="$WORK/certs" '/-----BEGIN CERTIFICATE-----/ { n++ } n { print > (dir "/" n ".crt") }' "$HOST_BUNDLE"
    extra=0
    for crt in "$WORK"/certs/*.crt; do
        [ -f "$crt" ] || continue
        body=$(grep -v -- '-----' "$crt" | tr -d '\n')
        if ! tr -d '\n' <"$DIR/etc/ssl/certs/ca-certificates.crt" | grep -qF "$body"; then
            extra=$((extra + 1))
            cp "$crt" "$DIR/usr/local/share/ca-certificates/host-extra-$extra.crt"
        fi
    done
    if [ "$extra" -gt 0 ]; then
        chroot "$DIR" update-ca-certificates >/dev/null 2>&1
        echo "make-base-image: added $extra CA certificate(s) this host trusts beyond Debian's"
    fi
fi
rm -rf "$DIR"/var/lib/apt/lists/* "$DIR"/var/cache/apt/*.bin "$DIR"/var/cache/apt/archives/*.deb \
    "$DIR"/usr/share/doc/* "$DIR"/usr/share/man/* "$DIR"/var/log/*.log "$DIR"/tmp/*
: >"$DIR/etc/machine-id"

tar --numeric-owner -C "$DIR" -c . | podman import --quiet \
    --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' \
    --message "debootstrap $SUITE minbase from $MIRROR" - "$IMAGE" >/dev/null
echo "make-base-image: $IMAGE made ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"
