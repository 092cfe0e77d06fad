#!/bin/sh
# docker/compose.yaml with podman-compose (.venv-compose/, scripts/install-podman.sh) on podman 4.3,
# Debian 12's podman. Two things of that podman shape the start:
#  - podman-compose gives `depends_on` to podman as `--requires`, which podman 4.3 cannot resolve for
#    a chain (init requires postgres; web requires init): "generating dependency graph ... not found
#    in input list". So services are started with --no-deps, in stages.
#  - it cannot wait for `service_healthy` (podman-compose ignores it before podman 4.6) and runs no
#    health check by itself without systemd. So `init` waits for PostgreSQL and RabbitMQ itself, and
#    the rest starts once init has exited 0.
# docker compose (v2) honours the file's depends_on conditions: `docker compose up -d` does all this.
#
# Usage: scripts/compose.sh up             init first (migrate, register client + factory), then the rest
#        scripts/compose.sh down [-v]      stop and remove the containers (-v: and all their volumes)
#        scripts/compose.sh ARGS...        any other podman-compose command (ps, logs SERVICE, ...)
# Environment: CONVHUB_ENV_FILE (default docker/.env), CONVHUB_PROJECT (default convhub),
#              CONVHUB_INIT_TIMEOUT (default 300 s).
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/docker/podman/containers.conf}
ENV_FILE=${CONVHUB_ENV_FILE:-$ROOT/docker/.env}
PROJECT=${CONVHUB_PROJECT:-convhub}
COMPOSE_BIN=${CONVHUB_COMPOSE_VENV:-$ROOT/.venv-compose}/bin/podman-compose

[ -f "$ENV_FILE" ] || { echo "compose: $ENV_FILE missing (cp docker/.env.example docker/.env)" >&2; exit 1; }
[ -x "$COMPOSE_BIN" ] || { echo "compose: $COMPOSE_BIN missing (scripts/install-podman.sh)" >&2; exit 1; }

pc() { "$COMPOSE_BIN" -p "$PROJECT" -f "$ROOT/docker/compose.yaml" --env-file "$ENV_FILE" "$@"; }
container_of() {
    podman ps -aq --filter "label=io.podman.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" | head -n1
}

case ${1:-} in
    up)
        shift
        pc up -d --no-build --no-deps "$@" postgres rabbitmq init
        init=$(container_of init)
        echo "compose: waiting for init (migrate, register the client and the factory) ..."
        code=$(timeout "${CONVHUB_INIT_TIMEOUT:-300}" podman wait "$init" || echo timeout)
        if [ "$code" != 0 ]; then
            podman logs --tail 40 "$init" >&2 || true
            echo "compose: init ended with $code" >&2
            exit 1
        fi
        podman logs "$init" 2>&1 | grep '^convhub-init:\|added\|at head' || true
        pc up -d --no-build --no-deps "$@" web worker beat flower proxy factory
        echo "compose: up (project $PROJECT); scripts/compose.sh ps | logs SERVICE | down"
        ;;
    down)
        # With -v, also the images' anonymous VOLUMEs (e.g. /var/lib/convhub), which
        # `podman-compose down -v` leaves behind: remove the containers with `rm -v` first.
        case " $* " in
            *" -v "* | *" --volumes "*)
                ids=$(podman ps -aq --filter "label=io.podman.compose.project=$PROJECT")
                # shellcheck disable=SC2086  # one id per word
                [ -z "$ids" ] || podman rm -f -v -t 10 $ids >/dev/null
                ;;
        esac
        pc "$@"
        ;;
    "")
        sed -n '2,/^set -eu/p' "$0" | sed '$d'
        exit 2
        ;;
    *)
        pc "$@"
        ;;
esac
