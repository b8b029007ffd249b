#!/usr/bin/env bash
# Deploys mlsys to the current kubectl context, one step at a time (see `make help`).
# With DRY_RUN=1 it prints every command and the manifests it would apply, and needs no
# cluster (kubectl only renders; without kubectl the manifest files are printed as they are);
# with RENDER_DIR too, it also writes what it would apply there, a file per kustomization
# or workflow (the scanner in the tests reads them).
# Images: REGISTRY and TAG (from the Makefile: the tag `make build_all` recorded, or TAG=)
# replace the committed placeholders (localhost:5000/...:latest) in a copy of what is
# applied; `latest` is refused, and before anything is applied every image the step will
# name must exist in REGISTRY (`docker manifest inspect`), else it stops naming the missing.
#   usage: deploy.sh initialize|base|job|delete|wait NAMESPACE KIND/NAME
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
manifests=infrastructure/manifests
registry="${REGISTRY:-localhost:5000}"
tag="${TAG:-}"
namespaces=(data mlflow argo beverage-sales-forecasting search-engine aianimals monitoring)

run() {
  if [ "${DRY_RUN:-0}" = 1 ]; then echo "+ $*"; else "$@"; fi
}

without_crd_schemas() {  # the dry run's print: a CRD's spec (Argo's: 11 MB) as one line
  awk '/^---$/ { crd = 0; skipping = 0 }
       /^kind: CustomResourceDefinition$/ { crd = 1 }
       crd && /^spec:$/ { skipping = 1; print "spec: {}  # elided in the dry run: see the file applied"; next }
       skipping && /^[^ ]/ { skipping = 0 }
       !skipping'
}

render() {  # what `kubectl apply -k` would send, for the dry run; secrets shown as REDACTED
  local folder=$1 copy
  copy="$(mktemp -d)"
  cp -r "$folder/." "$copy"
  for secret in $(grep -o 'secrets/[a-z-]*\.env' "$copy/kustomization.yaml"); do
    mkdir -p "$copy/secrets"
    printf 'REDACTED=REDACTED\n' > "$copy/$secret"
  done
  local files missing=0
  files=$(sed -n 's/^  - \([^ ]*\.yaml\).*$/\1/p' "$copy/kustomization.yaml")
  for file in $files; do [ -f "$copy/$file" ] || missing=1; done
  if command -v kubectl >/dev/null && [ "$missing" = 0 ]; then
    if [ -n "${RENDER_DIR:-}" ]; then
      kubectl kustomize "$copy" > "$RENDER_DIR/$(basename "$folder").yaml"
    fi
    kubectl kustomize "$copy" | without_crd_schemas
  else
    for file in $files; do
      if [ -f "$copy/$file" ]; then echo "---"; cat "$copy/$file"; else echo "# fetched: $file"; fi
    done
  fi
  rm -rf "$copy"
}

require_tag() {  # a deployment names an immutable image: what runs is what was built
  if [ -z "$tag" ]; then
    echo "no image tag: run \`make build_all\` (it records the tag it built) or pass TAG=" >&2
    exit 2
  fi
  if [ "$tag" = latest ]; then
    echo "TAG=latest: deploy the immutable tag \`make build_all\` built (the commit)" >&2
    exit 2
  fi
}

require_images() {  # require_images FILE...: each image the files name is in REGISTRY at TAG
  local docker="${DOCKER:-docker}" insecure="" missing=() image
  case "$registry" in localhost:*|localhost|127.*) insecure="--insecure" ;; esac  # plain HTTP
  for image in $(grep -ho 'localhost:5000/mlsys-[a-z-]*' "$@" | sort -u); do
    image="${registry}/${image#localhost:5000/}:${tag}"
    if [ "${DRY_RUN:-0}" = 1 ]; then
      echo "+ $docker manifest inspect $insecure $image"
    elif ! $docker manifest inspect $insecure "$image" >/dev/null 2>&1; then
      missing+=("$image")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    printf 'not in %s, nothing applied: %s\n' "$registry" "${missing[*]}" >&2
    echo "(make push_all REGISTRY=$registry TAG=$tag pushes them)" >&2
    exit 3
  fi
}

with_images() {  # with_images FILE: the committed image placeholders -> REGISTRY and TAG
  # Quoted: a commit such as 152024868255 is otherwise a YAML number, which kustomize refuses.
  sed -i -e "s|newName: localhost:5000/|newName: ${registry}/|" -e "s|newTag: latest|newTag: \"${tag}\"|" \
    -e "s|image: localhost:5000/\(mlsys-[a-z-]*\):latest|image: ${registry}/\1:${tag}|" "$1"
}

with_api_server() {  # with_api_server FILE: the workflow steps' egress to this cluster's
  # API server (the Service's address and its endpoints': a CNI may see either), in place
  # of the placeholder the committed NetworkPolicy holds
  grep -q '# API_SERVER$' "$1" || return 0
  local addresses address peers=""
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "+ kubectl get service,endpoints kubernetes -n default  (the API server's addresses)"
    return 0
  fi
  addresses="$(kubectl -n default get service kubernetes -o jsonpath='{.spec.clusterIP}') \
    $(kubectl -n default get endpoints kubernetes -o jsonpath='{.subsets[*].addresses[*].ip}')"
  for address in $addresses; do
    case "$address" in *:*) peers+="        - ipBlock: {cidr: $address/128}\n" ;;
      *) peers+="        - ipBlock: {cidr: $address/32}\n" ;; esac
  done
  [ -n "$peers" ] || { echo "no address of the Kubernetes API server found" >&2; exit 1; }
  sed -i "s|^        - ipBlock: {cidr: 192.0.2.1/32}  # API_SERVER$|${peers%\\n}|" "$1"
}

apply_kustomization() {
  local copy
  copy="$(mktemp -d)/$1"
  cp -r "$manifests/$1" "$copy"
  with_images "$copy/kustomization.yaml"
  if [ -f "$copy/network-policies.yaml" ]; then with_api_server "$copy/network-policies.yaml"; fi
  # A Job's pod template is immutable, and it names hash-suffixed ConfigMaps and Secrets:
  # the initial Jobs (idempotent loads) are replaced, not updated, so that a changed
  # config or image re-runs them instead of failing the apply.
  run kubectl -n "$1" delete job -l mlsys.io/replaced-on-deploy=true --ignore-not-found --wait
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "+ kubectl apply --server-side -k $manifests/$1"  # the copy, with its images
    render "$copy"
  else
    kubectl apply --server-side -k "$copy"
  fi
  rm -rf "$(dirname "$copy")"
}

initialize() {  # the namespaces
  for namespace in "${namespaces[@]}"; do
    run kubectl apply -f "$manifests/$namespace/namespace.yaml"
  done
}

wait_for() {  # wait_for NAMESPACE KIND/NAME: a rollout, or a Job's end
  case "$2" in
    job/*) wait_for_job "$1" "$2" 1200 ;;
    *) run kubectl -n "$1" rollout status "$2" --timeout=600s ;;
  esac
}

wait_for_job() {  # wait_for_job NAMESPACE job/NAME SECONDS: Complete, or Failed at once
  # (`kubectl wait --for=condition=complete` waits out its timeout on a Job that failed)
  local namespace=$1 job=$2 deadline=$((SECONDS + $3)) state
  if [ "${DRY_RUN:-0}" = 1 ]; then
    echo "+ kubectl -n $namespace wait $job: Complete or Failed, within $3 s"
    return
  fi
  while [ "$SECONDS" -lt "$deadline" ]; do
    state=$(kubectl -n "$namespace" get "$job" \
      -o jsonpath='{.status.conditions[?(@.status=="True")].type}')
    case " $state " in
      *" Complete "*) echo "$job: complete"; return 0 ;;
      *" Failed "*)
        echo "$job: failed, nothing more applied; its last lines:" >&2
        kubectl -n "$namespace" logs "$job" --tail=30 >&2 || true
        exit 1 ;;
    esac
    sleep "${POLL_SECONDS:-5}"
  done
  echo "$job: neither complete nor failed within $3 s" >&2
  exit 1
}

# Sourced (the tests), it only defines the functions above.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

case "${1:-}" in
  initialize)
    initialize
    ;;
  base)
    require_tag
    require_images "$manifests"/*/kustomization.yaml
    initialize
    apply_kustomization data
    wait_for data statefulset/postgres
    # The image runs create-roles.sh only on an empty volume: an existing cluster gets the
    # databases and roles a newer version lists (and changed passwords) here. Idempotent.
    run kubectl -n data exec statefulset/postgres -c postgres -- \
      bash /docker-entrypoint-initdb.d/create-roles.sh
    apply_kustomization mlflow
    apply_kustomization argo
    wait_for mlflow deployment/mlflow
    wait_for argo deployment/workflow-controller
    apply_kustomization beverage-sales-forecasting
    wait_for beverage-sales-forecasting job/beverage-migrate
    wait_for beverage-sales-forecasting job/initial-registration
    apply_kustomization search-engine
    wait_for search-engine statefulset/elasticsearch
    apply_kustomization aianimals
    wait_for aianimals statefulset/rabbitmq
    wait_for aianimals job/aianimals-migrate
    wait_for aianimals job/aianimals-initial-load
    for workload in deployment/api deployment/outbox-relay deployment/search-index \
        deployment/account-mail deployment/ranking-features deployment/ab-test-proxy \
        deployment/redis; do
      wait_for aianimals "$workload"
    done
    wait_for beverage-sales-forecasting deployment/bi
    apply_kustomization monitoring
    for workload in statefulset/prometheus statefulset/pushgateway deployment/grafana; do
      wait_for monitoring "$workload"
    done
    ;;
  job)
    require_tag
    require_images infrastructure/argo/*.yaml
    for workflow in infrastructure/argo/*.yaml; do
      copy="$(mktemp)"
      cp "$workflow" "$copy"
      with_images "$copy"
      if [ "${DRY_RUN:-0}" = 1 ]; then
        echo "+ kubectl apply -f $workflow"  # the copy, with its images
        cat "$copy"
        if [ -n "${RENDER_DIR:-}" ]; then cp "$copy" "$RENDER_DIR/$(basename "$workflow")"; fi
      else
        kubectl apply -f "$copy"
      fi
      rm -f "$copy"
    done
    ;;
  delete)
    for namespace in "${namespaces[@]}"; do
      run kubectl delete namespace "$namespace" --ignore-not-found
    done
    ;;
  wait)  # wait NAMESPACE KIND/NAME: what the steps above wait for, on its own
    wait_for "$2" "$3"
    ;;
  *)
    echo "usage: $0 initialize|base|job|delete|wait" >&2
    exit 2
    ;;
esac
