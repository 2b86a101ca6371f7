#!/bin/bash
# The part of the official postgres image's entry point that compose and
# testcontainers rely on: first start of an empty PGDATA creates the cluster
# with POSTGRES_USER / POSTGRES_PASSWORD (/ POSTGRES_DB), runs the
# /docker-entrypoint-initdb.d scripts against a server listening on the Unix
# socket only, then starts the real server on all addresses.
set -euo pipefail

if [ "${1:-postgres}" = postgres ]; then
    shift || true
    export POSTGRES_USER="${POSTGRES_USER:-postgres}"
    POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
        if [ -z "${POSTGRES_PASSWORD:-}" ]; then
            echo "error: POSTGRES_PASSWORD is not set (the stand-in, like the official image, refuses to start without one)" >&2
            exit 1
        fi
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
        initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
            --encoding=UTF8 --locale=C.UTF-8 >/dev/null
        rm -f "$pwfile"
        echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
        pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" -w start >/dev/null
        if [ "$POSTGRES_DB" != postgres ]; then
            psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
                --set=db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
        fi
        for script in /docker-entrypoint-initdb.d/*; do
            case "$script" in
                *.sh)  echo "init: running $script"; bash "$script" ;;
                *.sql) echo "init: running $script"; psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$script" ;;
                *)     [ -e "$script" ] && echo "init: ignoring $script" ;;
            esac
        done
        pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
        echo "PostgreSQL init process complete; ready for start up."
    fi
    exec postgres -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql "$@"
fi
exec "$@"
