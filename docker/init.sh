#!/bin/sh
# One-shot start-up step of docker/compose.yaml (service `init`): waits for PostgreSQL and RabbitMQ,
# brings the schema to head, then registers the client application and the factory named in the
# environment with their known secrets. Idempotent: a client or factory that exists already is
# kept as it is (its secret is not changed; use `convhub clients remove` / `factories remove` first).
#   CONVHUB_INIT_CLIENT, CONVHUB_INIT_CLIENT_SECRET      client application (optional)
#   FACTORY_NAME, CONVHUB_FACTORY_SECRET                 factory (optional)
#   CONVHUB_INIT_FACTORY_WORKERS                          its workers, ';' between them
#   CONVHUB_INIT_WAIT_SECONDS                             how long to wait for the services (120)
set -eu

limit=${CONVHUB_INIT_WAIT_SECONDS:-120}

retry() {  # what, command...: until it succeeds or `limit` seconds have passed
    what=$1
    shift
    start=$(date +%s)
    until out=$("$@" 2>&1); do
        if [ $(($(date +%s) - start)) -ge "$limit" ]; then
            echo "convhub-init: $what still failing after ${limit}s:" >&2
            echo "$out" >&2
            exit 1
        fi
        sleep 2
    done
    echo "$out"
}

add() {  # kind (clients|factories), name, args...: add unless it exists
    kind=$1 name=$2
    shift 2
    if out=$(convhub "$kind" add "$name" "$@" 2>&1); then
        echo "$out"
    elif echo "$out" | grep -q "exists already"; then
        echo "convhub-init: $kind $name exists already (kept as it is)"
    else
        echo "$out" >&2
        exit 1
    fi
}

retry "database (schema upgrade)" convhub db upgrade

if [ -n "${CONVHUB_INIT_CLIENT:-}" ]; then
    add clients "$CONVHUB_INIT_CLIENT" --secret="${CONVHUB_INIT_CLIENT_SECRET:?set CONVHUB_INIT_CLIENT_SECRET}"
fi

if [ -n "${FACTORY_NAME:-}" ] && [ -n "${CONVHUB_FACTORY_SECRET:-}" ]; then
    workers=${CONVHUB_INIT_FACTORY_WORKERS:-LibreOffice Writer|7.4|odt|pdf,png,odf;LibreOffice Calc|7.4|ods|pdf,png,odf;LibreOffice Impress|7.4|odp|pdf,png,odf}
    set --
    old_ifs=$IFS
    IFS=';'
    for w in $workers; do
        set -- "$@" --worker "$w"
    done
    IFS=$old_ifs
    # `factories add` also declares the factory's queues on the broker: wait for RabbitMQ too.
    retry "broker (RabbitMQ)" python -c "
import sys
from app.config import load_settings
from kombu import Connection
with Connection(load_settings().broker_url, connect_timeout=3) as c:
    c.ensure_connection(max_retries=1)
" >/dev/null
    add factories "$FACTORY_NAME" --secret="$CONVHUB_FACTORY_SECRET" "$@"
fi
echo "convhub-init: done"
