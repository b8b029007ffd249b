#!/usr/bin/env bash
# MLflow tracking server of the services profile (compose, Kubernetes, integration tests).
#
# Backend store: its own PostgreSQL database (MLFLOW_DB) on the platform's PostgreSQL,
# reached with the same POSTGRES_* variables as every component. Artifacts: proxied by
# the server (--serve-artifacts) to MLFLOW_ARTIFACTS_DESTINATION, a PVC path or an
# s3:// bucket, so clients never need storage credentials.
# Docs: https://mlflow.org/docs/latest/self-hosting/architecture/tracking-server/
set -euo pipefail

: "${POSTGRES_HOST:?}" "${POSTGRES_USER:?}" "${MLFLOW_DB:=mlflow}"
auth="${POSTGRES_USER}${POSTGRES_PASSWORD:+:${POSTGRES_PASSWORD}}"
backend="postgresql+psycopg://${auth}@${POSTGRES_HOST}:${POSTGRES_PORT:-5432}/${MLFLOW_DB}"

# The Host headers it answers (DNS rebinding protection), not "*": this machine, private
# addresses (the kubelet's probes name the pod's IP), compose's service name and the
# Kubernetes service. MLflow matches them with fnmatch.
default_hosts="localhost,localhost:*,127.0.0.1,127.0.0.1:*"
default_hosts="${default_hosts},10.*,172.1[6-9].*,172.2[0-9].*,172.3[01].*,192.168.*"
default_hosts="${default_hosts},mlflow,mlflow:*"
default_hosts="${default_hosts},mlflow.mlflow.svc.cluster.local,mlflow.mlflow.svc.cluster.local:*"

exec mlflow server \
  --backend-store-uri "${backend}" \
  --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/mlflow/artifacts}" \
  --serve-artifacts \
  --host "${MLFLOW_HOST:-0.0.0.0}" \
  --port "${MLFLOW_PORT:-5000}" \
  --workers "${MLFLOW_WORKERS:-2}" \
  --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-${default_hosts}}"
