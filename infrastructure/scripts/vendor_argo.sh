#!/usr/bin/env bash
# Renders Argo Workflows' cluster-wide install into infrastructure/manifests/argo/install.yaml
# from a checkout of github.com/argoproj/argo-workflows, as the release's Makefile renders
# its install.yaml asset (kustomize of manifests/cluster-install, `:latest` images pinned
# to the tag), and records the version and commit in release.env. An upgrade is: run it
# on the new tag, read the diff, run the deployment tests, commit. Nothing is downloaded at
# deploy time: deploy_base applies what is committed.
#   usage: vendor_argo.sh ARGO_CHECKOUT VERSION    (needs kubectl, for its kustomize)
set -euo pipefail
if [ $# -ne 2 ] || [ -z "$1" ] || [ -z "$2" ]; then
  echo "usage: make vendor_argo ARGO_SOURCE=<checkout of argo-workflows> ARGO_VERSION=<tag>" >&2
  exit 2
fi
source_repo=$1 version=$2
cd "$(dirname "$0")/../.."
folder="${ARGO_FOLDER:-infrastructure/manifests/argo}"  # ARGO_FOLDER: the tests' copy
commit="$(git -C "$source_repo" rev-parse "${version}^{commit}")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Only the folders the install is made of (a mirror may lack other files' blobs).
git -C "$source_repo" archive "$commit" manifests/base manifests/cluster-install \
  manifests/cluster-install-no-crds | tar -x -C "$work"
{
  echo "# Argo Workflows ${version} (commit ${commit}): its cluster-wide install, rendered by"
  echo "# infrastructure/scripts/vendor_argo.sh as the release renders its install.yaml. Do not edit."
  kubectl kustomize --load-restrictor=LoadRestrictionsNone "$work/manifests/cluster-install" \
    | sed "s/:latest/:${version}/"
} > "$work/install.yaml"
mv "$work/install.yaml" "$folder/install.yaml"
cat > "$folder/release.env" <<RELEASE
# The Argo Workflows release vendored in install.yaml (infrastructure/scripts/vendor_argo.sh).
ARGO_VERSION=${version}
ARGO_COMMIT=${commit}
RELEASE
echo "vendored Argo ${version} (${commit}): review the diff of ${folder}, then commit"
