#!/bin/sh
# Start the local PostgreSQL, Redis and RabbitMQ the integration tests use, if one is down.
# Idempotent; on a machine where they run already it only checks. Run as root.
set -u

check() { bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

if ! check 5432 && command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "ensure-services: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! check 6379 && command -v redis-server >/dev/null 2>&1; then
    echo "ensure-services: starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
if ! check 5672 && command -v rabbitmq-server >/dev/null 2>&1; then
    echo "ensure-services: starting RabbitMQ"
    rabbitmq-server -detached || true
fi
for port in 5432 6379 5672; do
    i=0
    while ! check "$port" && [ "$i" -lt 60 ]; do sleep 1; i=$((i + 1)); done
    check "$port" && echo "ensure-services: 127.0.0.1:$port up" || echo "ensure-services: 127.0.0.1:$port DOWN"
done
exit 0
