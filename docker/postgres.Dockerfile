# PostgreSQL 15 from Debian's packages, for docker/compose.yaml where no registry is reachable
# (anyone else may use the official postgres:15 image instead: same variables, same port).
# Build from docker/:  podman build -f postgres.Dockerfile -t convhub-postgres .
# Environment: POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB (created on first start).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 PGDATA=/var/lib/postgresql/data \
    PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p "$PGDATA" /var/run/postgresql \
 && chown postgres:postgres "$PGDATA" /var/run/postgresql \
 && chmod 0700 "$PGDATA"
COPY postgres/entrypoint.sh /usr/local/bin/convhub-postgres
USER postgres
VOLUME ["/var/lib/postgresql/data"]
EXPOSE 5432
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --timeout=5s --retries=12 CMD pg_isready -h 127.0.0.1 -q
CMD ["convhub-postgres"]
