#!/usr/bin/env bash
# `make monitoring`: Prometheus :9090 with the shipped configuration and alert rules
# (infrastructure/monitoring/prometheus-local.yml, which scrapes what `make serve` runs) and
# the Pushgateway :9091 that jobs push to (METRICS_PUSHGATEWAY_URL=http://127.0.0.1:9091),
# on localhost, from Debian's packages (installed if missing, root or sudo). Their data and
# logs are kept under MLSYS_HOME/monitoring. Idempotent: what already answers is left alone
# (Prometheus reloads its configuration: POST :9090/-/reload).
set -u
cd "$(dirname "$0")/../.."
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_up() { for _ in $(seq 1 60); do up "$1" && return 0; sleep 1; done; return 1; }

if ! command -v prometheus >/dev/null || ! command -v prometheus-pushgateway >/dev/null; then
  echo "installing prometheus and prometheus-pushgateway (Debian packages)"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    prometheus prometheus-pushgateway >/dev/null || exit 1
fi
data="${MLSYS_HOME:-.mlsys}/monitoring"
mkdir -p "$data"
failed=0
if ! up 9091; then
  setsid -f prometheus-pushgateway --web.listen-address=127.0.0.1:9091 \
    --persistence.file="$data/pushgateway.data" >"$data/pushgateway.log" 2>&1
fi
if ! up 9090; then
  setsid -f prometheus --config.file=infrastructure/monitoring/prometheus-local.yml \
    --storage.tsdb.path="$data/prometheus" --web.listen-address=127.0.0.1:9090 \
    --web.enable-lifecycle >"$data/prometheus.log" 2>&1
fi
wait_up 9091 || { echo "the Pushgateway did not come up: $data/pushgateway.log"; failed=1; }
wait_up 9090 || { echo "Prometheus did not come up: $data/prometheus.log"; failed=1; }
[ $failed = 0 ] || exit 1
echo "Prometheus:  http://127.0.0.1:9090/alerts   (rules: infrastructure/manifests/monitoring/alerts.yml)"
echo "Pushgateway: http://127.0.0.1:9091   (jobs push with METRICS_PUSHGATEWAY_URL=http://127.0.0.1:9091)"
