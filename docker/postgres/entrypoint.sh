#!/bin/sh
# First start: initdb, then the role and database from POSTGRES_USER/POSTGRES_PASSWORD/POSTGRES_DB.
# Every start: postgres in the foreground, listening on all addresses, password (scram) over TCP.
set -eu
: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
USER_NAME=${POSTGRES_USER:-postgres}
DB_NAME=${POSTGRES_DB:-$USER_NAME}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    initdb -D "$PGDATA" -U postgres --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
    echo "host all all ::/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    # Values as psql variables (:'v' quotes them): no shell or SQL injection from the environment.
    psql -v ON_ERROR_STOP=1 -q -U postgres -d postgres -v u="$USER_NAME" -v p="$POSTGRES_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'u', :'p') WHERE :'u' <> 'postgres' \gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'u', :'p') WHERE :'u' = 'postgres' \gexec
SQL
    if [ "$DB_NAME" != postgres ]; then
        createdb -U postgres -O "$USER_NAME" "$DB_NAME"
    fi
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "convhub-postgres: initialised $PGDATA (role $USER_NAME, database $DB_NAME)"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*'
