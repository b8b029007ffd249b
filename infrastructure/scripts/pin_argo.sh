#!/usr/bin/env bash
# Records in infrastructure/manifests/argo/release.env the SHA-256 of ARGO_VERSION's
# install.yaml (default: the version there), so that deploy.sh applies exactly that file.
#   usage: pin_argo.sh [VERSION]
set -euo pipefail
cd "$(dirname "$0")/../.."
release=infrastructure/manifests/argo/release.env
# shellcheck source=/dev/null
source "$release"
version="${1:-$ARGO_VERSION}"
url="https://github.com/argoproj/argo-workflows/releases/download/${version}/install.yaml"
digest="$(curl -fsSL --retry 3 "$url" | sha256sum | cut -d' ' -f1)"
sed -i -e "s|^ARGO_VERSION=.*|ARGO_VERSION=${version}|" \
  -e "s|^ARGO_INSTALL_SHA256=.*|ARGO_INSTALL_SHA256=${digest}|" "$release"
echo "pinned Argo ${version}: sha256 ${digest} (review and commit ${release})"
