#!/bin/sh
# Build the images docker/compose.yaml runs, with podman, from the local base image
# (scripts/make-base-image.sh) unless BASE names another one:
#   localhost/convhub-server, convhub-factory, convhub-postgres, convhub-rabbitmq, convhub-proxy
# Usage: scripts/build-images.sh [NAME...]   (default: all five)
# Layers are cached (podman's default): a rebuild after a code change reruns only the steps after
# `COPY app`; dependencies and Debian packages are rebuilt only when their inputs change.
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/docker/podman/containers.conf}
BASE=${BASE:-localhost/convhub-base:bookworm}
TAG=${CONVHUB_IMAGE_TAG:-latest}
case $BASE in
    localhost/*) PULL=never ;;  # made locally; there may be no registry at all
    *) PULL=missing ;;
esac

build() {  # name, dockerfile, context, [ignorefile]
    name=$1 file=$2 ctx=$3 ignore=${4:-}
    start=$(date +%s)
    set -- --pull="$PULL" --layers --build-arg "BASE=$BASE" -f "$file" -t "localhost/convhub-$name:$TAG"
    [ -n "$ignore" ] && set -- "$@" --ignorefile "$ignore"
    log=$(mktemp /tmp/convhub-build-$name.XXXXXX)
    if ! podman build "$@" "$ctx" >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "build-images: $name FAILED (full log: $log)" >&2
        exit 1
    fi
    rm -f "$log"
    size=$(podman image inspect --format '{{.Size}}' "localhost/convhub-$name:$TAG")
    echo "build-images: localhost/convhub-$name:$TAG built in $(($(date +%s) - start)) s ($((size / 1048576)) MiB)"
}

[ $# -gt 0 ] || set -- server factory postgres rabbitmq proxy
for name in "$@"; do
    case $name in
        server | factory)
            build "$name" "$ROOT/docker/$name.Dockerfile" "$ROOT" "$ROOT/docker/$name.Dockerfile.dockerignore" ;;
        postgres | rabbitmq | proxy)
            build "$name" "$ROOT/docker/$name.Dockerfile" "$ROOT/docker" ;;
        *) echo "build-images: unknown image $name" >&2; exit 2 ;;
    esac
done
