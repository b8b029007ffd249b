#!/usr/bin/env bash
# Deploys mlsys to the current kubectl context, one step at a time (see `make help`).
# With DRY_RUN=1 it prints every command and the manifests it would apply, and needs no
# cluster (kubectl only renders; without kubectl the manifest files are printed as they are).
#   usage: deploy.sh initialize|base|job|delete
set -euo pipefail
cd "$(dirname "$0")/../.."
manifests=infrastructure/manifests
namespaces=(data mlflow argo beverage-sales-forecasting search-engine aianimals)

run() {
  if [ "${DRY_RUN:-0}" = 1 ]; then echo "+ $*"; else "$@"; fi
}

render() {  # what `kubectl apply -k` would send, for the dry run; secrets shown as REDACTED
  local folder=$1 copy
  copy="$(mktemp -d)"
  cp -r "$folder/." "$copy"
  for secret in $(grep -o 'secrets/[a-z-]*\.env' "$copy/kustomization.yaml"); do
    mkdir -p "$copy/secrets"
    printf 'REDACTED=REDACTED\n' > "$copy/$secret"
  done
  if command -v kubectl >/dev/null && ! grep -q 'https://' "$copy/kustomization.yaml"; then
    kubectl kustomize "$copy"
  else
    for file in $(sed -n 's/^  - \([^h].*\.yaml\)$/\1/p' "$copy/kustomization.yaml"); do
      echo "---"; cat "$copy/$file"
    done
    grep -h 'https://' "$copy/kustomization.yaml" | sed 's/^ *- /# remote: /'
  fi
  rm -rf "$copy"
}

apply_kustomization() {
  run kubectl apply --server-side -k "$manifests/$1"
  if [ "${DRY_RUN:-0}" = 1 ]; then render "$manifests/$1"; fi
}

case "${1:-}" in
  initialize)
    for namespace in "${namespaces[@]}"; do
      run kubectl apply -f "$manifests/$namespace/namespace.yaml"
    done
    ;;
  base)
    apply_kustomization data
    run kubectl -n data rollout status statefulset/postgres --timeout=300s
    apply_kustomization mlflow
    apply_kustomization argo
    run kubectl -n mlflow rollout status deployment/mlflow --timeout=300s
    apply_kustomization beverage-sales-forecasting
    apply_kustomization search-engine
    apply_kustomization aianimals
    ;;
  job)
    for workflow in infrastructure/argo/*.yaml; do
      run kubectl apply -f "$workflow"
      if [ "${DRY_RUN:-0}" = 1 ]; then cat "$workflow"; fi
    done
    ;;
  delete)
    for namespace in "${namespaces[@]}"; do
      run kubectl delete namespace "$namespace" --ignore-not-found
    done
    ;;
  *)
    echo "usage: $0 initialize|base|job|delete" >&2
    exit 2
    ;;
esac
