#!/usr/bin/env bash
# Writes the env files that the kustomizations turn into Secret objects, with random
# values, once: a value already in any of these files is reused, so that a running
# database keeps its password. A file is rewritten only when it lacks a key it needs.
# The files are git-ignored; nothing secret is ever committed.
# All values also go to env.secret at the repository root, for docker compose.
#   usage: make_secrets.sh [MANIFESTS_DIR] [COMPOSE_ENV_FILE]
set -euo pipefail
manifests="${1:-$(dirname "$0")/../manifests}"
compose_env="${2:-$(dirname "$0")/../../env.secret}"

# The value of $1 in any existing env file, else $2, else a new random one.
value() {
  local existing
  existing="$(cat "$manifests"/*/secrets/*.env "$compose_env" 2>/dev/null | sed -n "s/^$1=//p" | head -n 1 || true)"
  echo "${existing:-${2:-$(python3 -c 'import secrets; print(secrets.token_hex(24))')}}"
}
# PostgreSQL: the superuser (only the server and its bootstrap script know it) and one
# login role per component (data/create-roles.sh makes them; the migrations grant them).
roles="beverage_owner beverage_data_registration beverage_ml beverage_monitoring beverage_bi
aianimals_owner aianimals_api aianimals_batch aianimals_search aianimals_violation_detection
aianimals_monitoring
mlflow"
postgres_server="POSTGRES_USER=postgres
POSTGRES_SUPERUSER_PASSWORD=$(value POSTGRES_SUPERUSER_PASSWORD)"
for role in $roles; do
  postgres_server="$postgres_server
${role^^}_PASSWORD=$(value "${role^^}_PASSWORD")"
done
role_password() { printf '%s\n' "$postgres_server" | sed -n "s/^${1^^}_PASSWORD=//p"; }
# What a component reads: its own role and password, nothing of the others'.
postgres_login() { printf 'POSTGRES_USER=%s\nPOSTGRES_PASSWORD=%s' "$1" "$(role_password "$1")"; }
rabbitmq_password="$(value RABBITMQ_PASSWORD)"
elasticsearch_password="$(value ELASTICSEARCH_PASSWORD)"
redis_password="$(value REDIS_PASSWORD)"
# MLflow's admin (the server makes it at its first start); the jobs and the BI log in as it.
mlflow_admin_password="$(value MLFLOW_AUTH_ADMIN_PASSWORD)"
mlflow_server="MLFLOW_AUTH_ADMIN_USERNAME=admin
MLFLOW_AUTH_ADMIN_PASSWORD=$mlflow_admin_password
MLFLOW_FLASK_SERVER_SECRET_KEY=$(value MLFLOW_FLASK_SERVER_SECRET_KEY)"
mlflow_client="MLFLOW_TRACKING_USERNAME=admin
MLFLOW_TRACKING_PASSWORD=$mlflow_admin_password"
bi_login="BI_USERNAME=admin
BI_PASSWORD=$(value BI_PASSWORD)"
aianimals="AUTH_SECRET_KEY=$(value AUTH_SECRET_KEY)
REDIS_PASSWORD=$redis_password
RABBITMQ_USER=mlsys
RABBITMQ_PASSWORD=$rabbitmq_password
ELASTICSEARCH_USER=elastic
ELASTICSEARCH_PASSWORD=$elasticsearch_password"
# The classifier server's callers (the detection consumer) send this token.
classifier="VIOLATION_DETECTION_TOKEN=$(value VIOLATION_DETECTION_TOKEN)"
# The SMTP relay the account mailer sends sign-up links through: MAIL_URL in the
# environment of `make secrets` (smtp://user:password@relay:587), or edit the file. Until
# then the links land as files in the mailer's /tmp/mail, for whoever can exec into it.
mail="MAIL_URL=$(value MAIL_URL "${MAIL_URL:-file:///tmp/mail}")"
rabbitmq_server="RABBITMQ_DEFAULT_USER=mlsys
RABBITMQ_DEFAULT_PASS=$rabbitmq_password"
redis_server="REDIS_PASSWORD=$redis_password"
elasticsearch_server="ELASTIC_PASSWORD=$elasticsearch_password"
# Grafana's admin (user `admin`).
grafana="GF_SECURITY_ADMIN_PASSWORD=$(value GF_SECURITY_ADMIN_PASSWORD)"

# write FILE CONTENT: keep FILE if it has every key of CONTENT, else (re)write it.
write() {
  local file="$1" content="$2" key missing=0
  for key in $(printf '%s\n' "$content" | cut -d= -f1); do
    grep -q "^$key=" "$file" 2>/dev/null || missing=1
  done
  if [ "$missing" = 0 ]; then
    echo "kept $file"
    return
  fi
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "+ write $file ($(printf '%s\n' "$content" | cut -d= -f1 | paste -sd, -), random values)"
    return
  fi
  mkdir -p "$(dirname "$file")"
  (umask 077 && printf '%s\n' "$content" > "$file")
  echo "wrote $file"
}

write "$manifests/data/secrets/postgres.env" "$postgres_server"
write "$manifests/mlflow/secrets/postgres.env" "$(postgres_login mlflow)"
write "$manifests/mlflow/secrets/mlflow-auth.env" "$mlflow_server"
write "$manifests/beverage-sales-forecasting/secrets/mlflow-credentials.env" "$mlflow_client"
write "$manifests/beverage-sales-forecasting/secrets/bi-credentials.env" "$bi_login"
for component in owner data_registration ml monitoring bi; do
  write "$manifests/beverage-sales-forecasting/secrets/postgres-${component//_/-}.env" \
    "$(postgres_login "beverage_$component")"
done
for component in owner api batch search violation_detection monitoring; do
  write "$manifests/aianimals/secrets/postgres-${component//_/-}.env" \
    "$(postgres_login "aianimals_$component")"
done
write "$manifests/aianimals/secrets/aianimals.env" "$aianimals"
write "$manifests/aianimals/secrets/mlflow-credentials.env" "$mlflow_client"
write "$manifests/aianimals/secrets/classifier.env" "$classifier"
write "$manifests/aianimals/secrets/mail.env" "$mail"
write "$manifests/aianimals/secrets/rabbitmq.env" "$rabbitmq_server"
write "$manifests/aianimals/secrets/redis.env" "$redis_server"
write "$manifests/search-engine/secrets/elasticsearch.env" "$elasticsearch_server"
write "$manifests/monitoring/secrets/grafana.env" "$grafana"
write "$compose_env" "$postgres_server
$mlflow_server
$bi_login
$aianimals
$classifier
$mail
$rabbitmq_server
$elasticsearch_server
$grafana"
