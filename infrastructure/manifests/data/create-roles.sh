#!/usr/bin/env bash
# The platform's databases and PostgreSQL roles. Each product database has an owner role
# that migrates it (`python -m mlsys.<component> migrate`); each component logs in as its
# own role, `<database>_<component>`, whose privileges the migrations grant
# (mlsys.common.migrate, from each product's Schema.privileges). MLflow owns its two
# databases (tracking; users and permissions).
#
# Runs as the superuser once, on an empty volume (docker-entrypoint-initdb.d), and is
# idempotent: run it again (kubectl exec / docker compose exec) to add what a newer
# version lists or to set changed passwords. Each password comes from the environment as
# <ROLE>_PASSWORD, e.g. AIANIMALS_API_PASSWORD (`make secrets` writes them).
set -euo pipefail

DATABASES="beverage aianimals"
COMPONENTS_beverage="data_registration ml monitoring bi"
COMPONENTS_aianimals="api batch search violation_detection monitoring"

psql_admin() {
  psql -v ON_ERROR_STOP=1 -q --no-psqlrc --username "${POSTGRES_USER:-postgres}" \
    --dbname postgres "$@"
}

login_role() {  # login_role NAME: a login role with the password in ${NAME^^}_PASSWORD
  local variable="${1^^}_PASSWORD"
  [ -n "${!variable:-}" ] || { echo "$variable is not set" >&2; exit 1; }
  psql_admin --set=name="$1" --set=password="${!variable}" <<'SQL'
SELECT format('CREATE ROLE %I', :'name')
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name') \gexec
ALTER ROLE :"name" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'password';
SQL
}

owned_database() {  # owned_database NAME OWNER: only roles granted CONNECT may connect
  psql_admin --set=name="$1" --set=owner="$2" <<'SQL'
SELECT format('CREATE DATABASE %I OWNER %I', :'name', :'owner')
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \gexec
ALTER DATABASE :"name" OWNER TO :"owner";
REVOKE ALL ON DATABASE :"name" FROM PUBLIC;
GRANT ALL ON DATABASE :"name" TO :"owner";
SQL
}

for database in $DATABASES; do
  login_role "${database}_owner"
  owned_database "$database" "${database}_owner"
  components="COMPONENTS_$database"
  for component in ${!components}; do
    login_role "${database}_${component}"
  done
done
login_role mlflow
owned_database mlflow mlflow
owned_database mlflow_auth mlflow  # MLflow's users and permissions
echo "databases and roles are in place: $DATABASES mlflow mlflow_auth"
