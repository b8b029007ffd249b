#!/usr/bin/env bash
# Records in infrastructure/manifests/argo/release.env the SHA-256 of ARGO_VERSION's
# install.yaml (default: the version there), so that deploy.sh applies exactly that file.
#   usage: pin_argo.sh [VERSION]
#   ARGO_RELEASES (a mirror of the release assets) and RELEASE_ENV may be overridden.
set -euo pipefail
cd "$(dirname "$0")/../.."
release="${RELEASE_ENV:-infrastructure/manifests/argo/release.env}"
releases="${ARGO_RELEASES:-https://github.com/argoproj/argo-workflows/releases/download}"
# shellcheck source=/dev/null
source "$release"
version="${1:-$ARGO_VERSION}"
digest="$(curl -fsSL --retry 3 "${releases}/${version}/install.yaml" | sha256sum | cut -d' ' -f1)"
sed -i -e "s|^ARGO_VERSION=.*|ARGO_VERSION=${version}|" \
  -e "s|^ARGO_INSTALL_SHA256=.*|ARGO_INSTALL_SHA256=${digest}|" "$release"
echo "pinned Argo ${version}: sha256 ${digest} (review and commit ${release})"
