#!/bin/sh
# Writes rabbitmq.conf from the environment (the default user, password and vhost take effect on the
# node's first start, with an empty database), then runs the node in the foreground.
set -eu
: "${RABBITMQ_DEFAULT_PASS:?set RABBITMQ_DEFAULT_PASS}"
umask 077
cat >"$RABBITMQ_CONFIG_FILE" <<CONF
loopback_users = none
listeners.tcp.default = 5672
management.tcp.port = 15672
default_user = ${RABBITMQ_DEFAULT_USER:-guest}
default_pass = ${RABBITMQ_DEFAULT_PASS}
default_vhost = ${RABBITMQ_DEFAULT_VHOST:-/}
default_permissions.configure = .*
default_permissions.read = .*
default_permissions.write = .*
CONF
exec /usr/lib/rabbitmq/bin/rabbitmq-server
