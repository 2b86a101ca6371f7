#!/bin/bash
# Runs once, on the first start of an empty PostgreSQL data directory
# (mounted into /docker-entrypoint-initdb.d): one role and one database per
# service, each database owned by its service's role and closed to the others.
# Passwords come from the container environment (<SERVICE>_DB_PASSWORD).
set -euo pipefail

create_service_database() {
    local service="$1"
    local password_variable="${service^^}_DB_PASSWORD"
    local password="${!password_variable:-}"
    if [[ -z "$password" ]]; then
        echo "init: $password_variable is not set; refusing to create role $service without a password" >&2
        exit 1
    fi
    # psql variables (:"name" identifier, :'password' literal) quote safely.
    psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
        --set=name="$service" --set=password="$password" <<'SQL'
CREATE ROLE :"name" LOGIN PASSWORD :'password';
CREATE DATABASE :"name" OWNER :"name" ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
SQL
    echo "init: created role and database $service"
}

for service in dossier payment notify portal_sync; do
    create_service_database "$service"
done
