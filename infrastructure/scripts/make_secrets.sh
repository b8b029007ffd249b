#!/usr/bin/env bash
# Writes the env files that the kustomizations turn into Secret objects, with random
# values, once: existing files are kept so that a running database keeps its password.
# The files are git-ignored; nothing secret is ever committed.
# The same credentials go to env.secret at the repository root, for docker compose.
#   usage: make_secrets.sh [MANIFESTS_DIR] [COMPOSE_ENV_FILE]
set -euo pipefail
manifests="${1:-$(dirname "$0")/../manifests}"
compose_env="${2:-$(dirname "$0")/../../env.secret}"
# One password for every copy; an existing one is reused.
password="$(cat "$manifests"/*/secrets/postgres.env "$compose_env" 2>/dev/null | sed -n 's/^POSTGRES_PASSWORD=//p' | head -n 1 || true)"
password="${password:-$(python3 -c 'import secrets; print(secrets.token_hex(24))')}"
for file in "$manifests"/{data,mlflow,beverage-sales-forecasting}/secrets/postgres.env "$compose_env"; do
  if [ -s "$file" ]; then
    echo "kept $file"
    continue
  fi
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "+ write $file (POSTGRES_USER, random POSTGRES_PASSWORD)"
    continue
  fi
  mkdir -p "$(dirname "$file")"
  umask 077
  printf 'POSTGRES_USER=mlsys\nPOSTGRES_PASSWORD=%s\n' "$password" > "$file"
  echo "wrote $file"
done
