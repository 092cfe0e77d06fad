#!/bin/sh
# Enable RabbitMQ's management plugin (HTTP API on port 15672), which Flower needs to show queue
# lengths on RabbitMQ. Idempotent; no broker restart. Run on the RabbitMQ host, as root.
set -eu
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
if $SUDO rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_management; then
    echo "rabbitmq_management already enabled"
else
    $SUDO rabbitmq-plugins enable rabbitmq_management
fi
# The listener may take a few seconds to come up after enabling.
i=0
while [ $i -lt 30 ]; do
    if (exec 3<>/dev/tcp/127.0.0.1/15672) 2>/dev/null || python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1",15672),1)' 2>/dev/null; then
        echo "management API listening on :15672"
        exit 0
    fi
    i=$((i + 1)); sleep 1
done
echo "warning: rabbitmq_management enabled but :15672 is not answering yet" >&2
