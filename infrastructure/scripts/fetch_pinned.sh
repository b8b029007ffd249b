#!/usr/bin/env bash
# Downloads URL to DEST only if its SHA-256 is the pinned one: a release asset (or a tag)
# can be replaced upstream, a digest cannot. Nothing is left at DEST when it differs.
#   usage: fetch_pinned.sh URL SHA256 DEST
set -euo pipefail
url=$1 digest=$2 dest=$3
if [ -z "$digest" ]; then
  echo "no SHA-256 pinned for $url: run \`make pin_argo\` where it is reachable, review, commit" >&2
  exit 2
fi
partial="$(mktemp "$(dirname "$dest")/.fetch.XXXXXX")"
trap 'rm -f "$partial"' EXIT
curl -fsSL --retry 3 "$url" -o "$partial"
actual="$(sha256sum "$partial" | cut -d' ' -f1)"
if [ "$actual" != "$digest" ]; then
  echo "refusing $url: its SHA-256 is $actual, the pinned one $digest" >&2
  exit 2
fi
mv "$partial" "$dest"
