#!/usr/bin/env bash
# MLflow tracking server of the services profile (compose, Kubernetes, integration tests).
#
# Backend store: its own PostgreSQL database (MLFLOW_DB) on the platform's PostgreSQL,
# reached with the same POSTGRES_* variables as every component. Artifacts: proxied by
# the server (--serve-artifacts) to MLFLOW_ARTIFACTS_DESTINATION, a PVC path or an
# s3:// bucket, so clients never need storage credentials.
#
# Every request but /health needs a user (MLflow's basic-auth app): the admin is made on
# the first start from MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD (at least
# 12 characters); users and their permissions live in their own database (MLFLOW_AUTH_DB).
# Users see nothing they were not granted. Clients send MLFLOW_TRACKING_USERNAME and
# MLFLOW_TRACKING_PASSWORD.
# Docs: https://mlflow.org/docs/latest/self-hosting/architecture/tracking-server/
set -euo pipefail

: "${POSTGRES_HOST:?}" "${POSTGRES_USER:?}" "${MLFLOW_DB:=mlflow}" "${MLFLOW_AUTH_DB:=mlflow_auth}"
: "${MLFLOW_AUTH_ADMIN_USERNAME:?}" "${MLFLOW_AUTH_ADMIN_PASSWORD:?}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?the key of the CSRF tokens of the auth app}"
auth="${POSTGRES_USER}${POSTGRES_PASSWORD:+:${POSTGRES_PASSWORD}}"
server="postgresql+psycopg://${auth}@${POSTGRES_HOST}:${POSTGRES_PORT:-5432}"
backend="${server}/${MLFLOW_DB}"

auth_config="$(mktemp -d)/basic_auth.ini"  # holds the database password: private
(umask 077 && cat > "$auth_config" <<EOF
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = ${server}/${MLFLOW_AUTH_DB}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
grant_default_workspace_access = false
EOF
)
export MLFLOW_AUTH_CONFIG_PATH="$auth_config" MLFLOW_AUTH_ADMIN_USERNAME MLFLOW_AUTH_ADMIN_PASSWORD
export MLFLOW_FLASK_SERVER_SECRET_KEY

# The Host headers it answers (DNS rebinding protection), not "*": this machine, private
# addresses (the kubelet's probes name the pod's IP), compose's service name and the
# Kubernetes service. MLflow matches them with fnmatch.
default_hosts="localhost,localhost:*,127.0.0.1,127.0.0.1:*"
default_hosts="${default_hosts},10.*,172.1[6-9].*,172.2[0-9].*,172.3[01].*,192.168.*"
default_hosts="${default_hosts},mlflow,mlflow:*"
default_hosts="${default_hosts},mlflow.mlflow.svc.cluster.local,mlflow.mlflow.svc.cluster.local:*"

exec mlflow server \
  --app-name basic-auth \
  --backend-store-uri "${backend}" \
  --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/mlflow/artifacts}" \
  --serve-artifacts \
  --host "${MLFLOW_HOST:-0.0.0.0}" \
  --port "${MLFLOW_PORT:-5000}" \
  --workers "${MLFLOW_WORKERS:-2}" \
  --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-${default_hosts}}"
