#!/usr/bin/env bash
# `make base_images`: the Dockerfile's two base images built here, for a machine that
# cannot pull the official ones (no registry reachable), from Debian's archive and PyPI:
#   PYTHON_IMAGE  Debian bookworm's Python 3.11 (debootstrap --variant=minbase, then
#                 `docker import`): what python:3.11-slim-bookworm holds, from Debian packages
#   UV_IMAGE      uv's binaries from its PyPI wheel in an otherwise empty image, as
#                 ghcr.io/astral-sh/uv is
# Their names: `python3 infrastructure/images.py bases`; the Python base's tag ends with a
# digest of this script, so that a changed recipe makes a new base. An image that exists
# already is kept. Needs root or sudo (debootstrap) and the Debian package
# debootstrap, installed when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
bases=$(python3 infrastructure/images.py bases)
python_image=$(sed -n 's/^PYTHON_IMAGE=//p' <<<"$bases")
uv_image=$(sed -n 's/^UV_IMAGE=//p' <<<"$bases")
uv_version=${uv_image##*:}
docker=${DOCKER:-docker}
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
work=$(mktemp -d /var/tmp/mlsys-base.XXXXXX)
trap '$sudo rm -rf "$work"' EXIT

exists() { $docker image inspect "$1" >/dev/null 2>&1; }

if exists "$python_image"; then
  echo "$python_image: present"
else
  command -v debootstrap >/dev/null || {
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq debootstrap >/dev/null
  }
  echo "$python_image: debootstrap bookworm (minbase) with python3 from $mirror"
  # What the official slim image has besides Python: CA certificates, netbase, tzdata, and
  # `python` as a name for python3.
  $sudo debootstrap --variant=minbase \
    --include=python3,python-is-python3,ca-certificates,netbase,tzdata \
    bookworm "$work/root" "$mirror" > "$work/debootstrap.log" \
    || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
  # As Debian's slim images do (debuerreotype's slimify): no manuals, documentation but the
  # copyright files, or translations (33 MB of /usr/share/locale), now and for every
  # package an image installs later; no package lists or caches, and apt told to keep none
  # (Debian's docker-clean).
  $sudo tee "$work/root/etc/dpkg/dpkg.cfg.d/docker" >/dev/null <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
DPKG
  $sudo find "$work/root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  $sudo find "$work/root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias \
    -exec rm -rf {} +
  $sudo rm -rf "$work"/root/var/lib/apt/lists/* "$work"/root/var/cache/apt/* \
    "$work"/root/usr/share/man/* "$work"/root/usr/share/info/* \
    "$work"/root/usr/share/groff/* "$work"/root/usr/share/lintian/*
  $sudo tee "$work/root/etc/apt/apt.conf.d/docker-clean" >/dev/null <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
  $sudo tar -C "$work/root" --numeric-owner -c . | $docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "Debian bookworm minbase + python3 (mlsys base_images.sh)" \
    - "$python_image" >/dev/null
fi

if exists "$uv_image"; then
  echo "$uv_image: present"
else
  echo "$uv_image: uv $uv_version from its PyPI wheel"
  python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform "manylinux_2_17_$(uname -m)" --python-version 3.11 --dest "$work/wheel" \
    "uv==$uv_version"
  mkdir -p "$work/uv"
  python3 - "$work" <<'PYTHON'
import sys, zipfile
from pathlib import Path
work = Path(sys.argv[1])
wheel = next((work / "wheel").glob("uv-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        binary = Path(name).name
        if "/scripts/" in name and binary in {"uv", "uvx"}:
            (work / "uv" / binary).write_bytes(archive.read(name))
            (work / "uv" / binary).chmod(0o755)
PYTHON
  test -x "$work/uv/uv" && test -x "$work/uv/uvx"
  tar -C "$work/uv" --owner=0 --group=0 -c uv uvx | $docker import \
    --message "uv $uv_version from PyPI (mlsys base_images.sh)" - "$uv_image" >/dev/null
fi
for image in "$python_image" "$uv_image"; do
  printf '%-36s %s MB\n' "$image" \
    "$(( $($docker image inspect --format '{{.Size}}' "$image") / 1000000 ))"
done
