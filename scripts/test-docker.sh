#!/usr/bin/env bash
# `make test-docker`: the compose topology, built and run with podman, checked from the host.
#  1. podman, runc, debootstrap, poppler-utils (Debian), podman-compose (PyPI, .venv-compose/)
#  2. the base image localhost/convhub-base:bookworm (debootstrap; cached)
#  3. the images (podman build, layers cached): server, factory, postgres, rabbitmq, proxy
#  4. `scripts/compose.sh up` (podman-compose) of docker/compose.yaml as project $CONVHUB_STACK_PROJECT, fresh
#     random secrets and free loopback ports, then tests/docker (pytest) from the host through the
#     published ports: init, every container's health check, /healthz on both web replicas through
#     the proxy, an ODT over SOAP -> a 2-page PDF (pages 2-3) by the LibreOffice factory container,
#     /metrics, Flower
#  5. `podman-compose down -v` (also on failure or interruption), after printing the logs on failure.
# Bounded: every step has a timeout, the whole run CONVHUB_DOCKER_TIMEOUT s (default 3600).
# Run as root (podman as root; apt-get for step 1). Needs the project venv (`make install`).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/docker/podman/containers.conf}
PROJECT=${CONVHUB_STACK_PROJECT:-convhub-test}
PY=${PY:-$ROOT/.venv/bin/python}
LIMIT=${CONVHUB_DOCKER_TIMEOUT:-3600}
T0=$(date +%s)
WORK=""
UP=0

phase() { echo "test-docker: [$(($(date +%s) - T0)) s] $*"; }
left() {  # seconds left of the whole budget, at most $1
    local rest=$((LIMIT - ($(date +%s) - T0)))
    [ "$rest" -gt 0 ] || { echo "test-docker: out of time (CONVHUB_DOCKER_TIMEOUT=$LIMIT s)" >&2; exit 124; }
    [ "$rest" -lt "$1" ] && echo "$rest" || echo "$1"
}
compose() {  # seconds, scripts/compose.sh arguments...
    local limit=$1
    shift
    timeout "$limit" env CONVHUB_ENV_FILE="$WORK/env" CONVHUB_PROJECT="$PROJECT" sh scripts/compose.sh "$@"
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ "$UP" = 1 ]; then
        if [ "$rc" != 0 ]; then
            phase "FAILED (exit $rc): container states and the last log lines of each"
            podman ps -a --filter "label=io.podman.compose.project=$PROJECT" \
                --format '{{.Names}} {{.Status}}' 2>/dev/null || true
            for c in $(podman ps -a --filter "label=io.podman.compose.project=$PROJECT" --format '{{.Names}}' 2>/dev/null); do
                echo "----- $c"
                timeout 30 podman logs --tail 40 "$c" 2>&1 || true
            done
        fi
        phase "tearing down (scripts/compose.sh down -v)"
        compose 300 down -v -t 10 >"$WORK/down.log" 2>&1 || { tail -n 20 "$WORK/down.log"; echo "test-docker: down failed" >&2; }
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
    phase "$([ "$rc" = 0 ] && echo PASSED || echo "FAILED (exit $rc)") in $(($(date +%s) - T0)) s"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ "$(id -u)" != 0 ]; then
    echo "test-docker: run as root (podman as root, apt-get for its packages)" >&2
    exit 1
fi
[ -x "$PY" ] || { echo "test-docker: $PY missing; run make install" >&2; exit 1; }

phase "1/5 podman, runc, debootstrap, podman-compose"
timeout "$(left 900)" sh scripts/install-podman.sh
phase "2/5 base image"
timeout "$(left 1200)" sh scripts/make-base-image.sh
phase "3/5 images"
timeout "$(left 2700)" sh scripts/build-images.sh

WORK=$(mktemp -d /tmp/convhub-test-docker.XXXXXX)
read -r HTTP_PORT FLOWER_PORT < <("$PY" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
')
secret() { "$PY" -c 'import secrets; print(secrets.token_urlsafe(24))'; }
cat >"$WORK/env" <<EOF
POSTGRES_PASSWORD=$(secret)
RABBITMQ_PASSWORD=$(secret)
CONVHUB_OPERATOR_USER=admin
CONVHUB_OPERATOR_PASSWORD=$(secret)
CONVHUB_PUBLIC_URL=http://127.0.0.1:$HTTP_PORT
CONVHUB_CLIENT=ci-client
CONVHUB_CLIENT_SECRET=$(secret)
FACTORY_NAME=factory-1
CONVHUB_FACTORY_SECRET=$(secret)
HTTP_PORT=$HTTP_PORT
FLOWER_PORT=$FLOWER_PORT
EOF

phase "4/5 scripts/compose.sh up (podman-compose; project $PROJECT; proxy on 127.0.0.1:$HTTP_PORT, Flower on 127.0.0.1:$FLOWER_PORT)"
UP=1
compose 120 down -v -t 5 >/dev/null 2>&1 || true
if ! compose "$(left 600)" up >"$WORK/up.log" 2>&1; then
    tail -n 60 "$WORK/up.log"
    exit 1
fi
grep '^compose:\|^convhub-init:\|added' "$WORK/up.log" || true
phase "stack started; checks from the host:"
set -a
# shellcheck disable=SC1091
. "$WORK/env"
set +a
CONVHUB_STACK_URL=http://127.0.0.1:$HTTP_PORT \
CONVHUB_STACK_FLOWER_URL=http://127.0.0.1:$FLOWER_PORT \
CONVHUB_STACK_PROJECT=$PROJECT \
    timeout "$(left 1500)" "$PY" -m pytest -p no:cacheprovider -q -s -rA --timeout=900 \
    -o addopts="" tests/docker
phase "5/5 all checks passed"
