#!/usr/bin/env bash
# `make services`: PostgreSQL :5432, Redis :6379 and RabbitMQ :5672 answering on localhost,
# for the integration tests and the services profile on one machine (Debian/Ubuntu, root
# or sudo). Installs the Debian package of a server that is missing, starts what is down,
# waits for it, and exits non-zero naming each one that did not come up. Idempotent: what
# already answers is left alone.
set -u
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() { for _ in $(seq 1 "${2:-60}"); do up "$1" && return 0; sleep 1; done; return 1; }
updated=0
installed=()
install() {  # install Debian packages unless their commands are there already
  local command=$1; shift
  command -v "$command" >/dev/null 2>&1 && return 0
  echo "installing $* (Debian packages)"
  installed+=("$command")
  if [ $updated = 0 ]; then $sudo apt-get update -qq && updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
failed=()

start_postgresql() {
  install pg_ctlcluster postgresql || return 1
  local version fresh=0
  [[ " ${installed[*]} " == *" pg_ctlcluster "* ]] && fresh=1
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$version" ]; then  # the package came without a cluster
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    $sudo pg_createcluster "$version" main || return 1
    fresh=1
  fi
  local hba="/etc/postgresql/$version/main/pg_hba.conf"
  if [ $fresh = 1 ] && ! $sudo grep -q '^# mlsys: trust on localhost' "$hba"; then
    # A cluster made here: the tests connect as postgres without a password, from this
    # machine only. An existing cluster's authentication is never changed.
    printf '# mlsys: trust on localhost\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' \
      | $sudo sh -c "cat - '$hba' > '$hba.new' && mv '$hba.new' '$hba'"
    $sudo chown postgres:postgres "$hba"
  fi
  $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start
}

start_redis() {
  install redis-server redis-server || return 1
  $sudo mkdir -p /var/lib/redis /var/log/redis
  $sudo redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/mlsys.log
}

start_rabbitmq() {
  install rabbitmq-server rabbitmq-server || return 1
  $sudo rabbitmq-server -detached
}

for service in "PostgreSQL 5432 start_postgresql" "Redis 6379 start_redis" \
               "RabbitMQ 5672 start_rabbitmq"; do
  read -r name port start <<<"$service"
  if up "$port"; then
    echo "$name answers on :$port"
    continue
  fi
  echo "starting $name"
  $start || true
  if wait_up "$port" 90; then
    echo "$name answers on :$port"
  else
    echo "$name did not come up on :$port" >&2
    failed+=("$name")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "not running: ${failed[*]}" >&2
  exit 1
fi
