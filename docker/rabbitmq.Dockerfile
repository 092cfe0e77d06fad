# RabbitMQ with the management plugin (Flower reads queue lengths from its HTTP API) from Debian's
# packages, for docker/compose.yaml where no registry is reachable (anyone else may use the official
# rabbitmq:3-management image: same variables, same ports).
# Build from docker/:  podman build -f rabbitmq.Dockerfile -t convhub-rabbitmq .
# Environment: RABBITMQ_DEFAULT_USER, RABBITMQ_DEFAULT_PASS, RABBITMQ_DEFAULT_VHOST (first start).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 HOME=/var/lib/rabbitmq \
    RABBITMQ_CONFIG_FILE=/var/lib/rabbitmq/rabbitmq.conf \
    RABBITMQ_LOGS=- RABBITMQ_ENABLED_PLUGINS_FILE=/var/lib/rabbitmq/enabled_plugins
RUN apt-get update \
 && apt-get install -y --no-install-recommends rabbitmq-server \
 && rm -rf /var/lib/apt/lists/* \
 && echo '[rabbitmq_management].' >/var/lib/rabbitmq/enabled_plugins \
 && chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
COPY rabbitmq/entrypoint.sh /usr/local/bin/convhub-rabbitmq
USER rabbitmq
VOLUME ["/var/lib/rabbitmq"]
EXPOSE 5672 15672
HEALTHCHECK --interval=10s --timeout=10s --start-period=20s --retries=12 \
  CMD rabbitmq-diagnostics -q check_port_connectivity
CMD ["convhub-rabbitmq"]
