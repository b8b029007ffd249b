#!/usr/bin/env bash
# `make engine`: a Docker engine that builds with BuildKit and runs Compose v2 (Debian or
# Ubuntu, root or sudo). Installs Debian's docker.io when the daemon is missing, and Compose
# v2 when `docker compose` is missing (bookworm's docker-compose 1.29 rejects the compose
# file's top-level `name:`, so the plugin binary of trixie's package 2.26 is taken with
# `apt-get download`, nothing else of trixie is installed); starts the daemon when it is
# down, waits for it, and exits non-zero naming what did not come up. Idempotent.
# DOCKER: the client (the Makefile's: /usr/bin/docker where it is, whose BuildKit needs no
# buildx plugin when it is Debian's, and which Docker's own packages pair with buildx).
set -u
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
client() { if [ -n "${DOCKER:-}" ]; then echo "$DOCKER"; elif [ -x /usr/bin/docker ]; then echo /usr/bin/docker; else echo docker; fi; }
docker=$(client)
failed=()
updated=0
apt_update() { if [ $updated = 0 ]; then $sudo apt-get update -qq && updated=1; fi; }

if ! command -v dockerd >/dev/null 2>&1; then
  echo "installing docker.io (Debian package)"
  apt_update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq docker.io >/dev/null \
    || failed+=("docker.io (apt-get install)")
  docker=$(client)
fi

if ! $docker compose version >/dev/null 2>&1; then
  echo "installing Compose v2 (the plugin of Debian trixie's docker-compose package)"
  work=$(mktemp -d)
  chmod 755 "$work"  # apt's sandbox user writes the download here
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" \
    > "$work/trixie.list"
  options=(-o "Dir::Etc::sourcelist=$work/trixie.list" -o Dir::Etc::sourceparts=-
           -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache")
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial"
  if $sudo apt-get "${options[@]}" update -qq \
      && (cd "$work" && $sudo apt-get "${options[@]}" download -qq docker-compose) \
      && dpkg-deb -x "$work"/docker-compose_*.deb "$work/root"; then
    $sudo install -D -m 755 "$work/root/usr/libexec/docker/cli-plugins/docker-compose" \
      /usr/libexec/docker/cli-plugins/docker-compose
  fi
  $sudo rm -rf "$work"
  $docker compose version >/dev/null 2>&1 || failed+=("docker compose (Compose v2)")
fi

if command -v dockerd >/dev/null 2>&1 && ! $docker info >/dev/null 2>&1; then
  echo "starting the Docker daemon"
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    $sudo systemctl start docker
  else  # no init system (a container, a CI runner): the daemon in the background
    $sudo mkdir -p /var/log
    $sudo setsid nohup dockerd >/var/log/mlsys-dockerd.log 2>&1 < /dev/null &
  fi
  for _ in $(seq 1 60); do $docker info >/dev/null 2>&1 && break; sleep 1; done
  $docker info >/dev/null 2>&1 \
    || failed+=("the Docker daemon (see /var/log/mlsys-dockerd.log or \`journalctl -u docker\`)")
fi

if [ ${#failed[@]} -gt 0 ]; then
  printf 'not working: %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "Docker engine $($docker version --format '{{.Server.Version}}') and $($docker compose version --short 2>/dev/null) answer ($docker)"
