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

# The value of $1 in any existing env file, or a new random one.
value() {
  local existing
  existing="$(cat "$manifests"/*/secrets/*.env "$compose_env" 2>/dev/null | sed -n "s/^$1=//p" | head -n 1 || true)"
  echo "${existing:-$(python3 -c 'import secrets; print(secrets.token_hex(24))')}"
}
postgres="POSTGRES_USER=mlsys
POSTGRES_PASSWORD=$(value POSTGRES_PASSWORD)"
rabbitmq_password="$(value RABBITMQ_PASSWORD)"
elasticsearch_password="$(value ELASTICSEARCH_PASSWORD)"
aianimals="$postgres
AUTH_SECRET_KEY=$(value AUTH_SECRET_KEY)
RABBITMQ_USER=mlsys
RABBITMQ_PASSWORD=$rabbitmq_password
ELASTICSEARCH_USER=elastic
ELASTICSEARCH_PASSWORD=$elasticsearch_password"
rabbitmq_server="RABBITMQ_DEFAULT_USER=mlsys
RABBITMQ_DEFAULT_PASS=$rabbitmq_password"
elasticsearch_server="ELASTIC_PASSWORD=$elasticsearch_password"

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

for namespace in data mlflow beverage-sales-forecasting; do
  write "$manifests/$namespace/secrets/postgres.env" "$postgres"
done
write "$manifests/aianimals/secrets/aianimals.env" "$aianimals"
write "$manifests/aianimals/secrets/rabbitmq.env" "$rabbitmq_server"
write "$manifests/search-engine/secrets/elasticsearch.env" "$elasticsearch_server"
write "$compose_env" "$aianimals
$rabbitmq_server
$elasticsearch_server"
