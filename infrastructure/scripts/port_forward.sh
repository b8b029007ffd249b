#!/usr/bin/env bash
# Opens the consoles on localhost until Ctrl-C: BI :8501, MLflow :5001 (not :5000, where a
# local image registry listens), Argo :2746, API :8000, the A/B test proxy :8080, the
# moderators' review portal :8502.
set -euo pipefail
run() {
  if [ "${DRY_RUN:-0}" = 1 ]; then echo "+ $*"; else "$@" & fi
}
run kubectl -n beverage-sales-forecasting port-forward service/bi 8501:8501
run kubectl -n mlflow port-forward service/mlflow 5001:5000
run kubectl -n argo port-forward service/argo-server 2746:2746
run kubectl -n aianimals port-forward service/api 8000:8000
run kubectl -n aianimals port-forward service/ab-test-proxy 8080:8080
run kubectl -n aianimals port-forward service/review-portal 8502:8502
run kubectl -n monitoring port-forward service/grafana 3000:3000
run kubectl -n monitoring port-forward service/prometheus 9090:9090
if [ "${DRY_RUN:-0}" != 1 ]; then
  echo "BI http://localhost:8501  MLflow http://localhost:5001  Argo https://localhost:2746  API http://localhost:8000/v0/docs  A/B proxy http://localhost:8080/ab/health  Portal http://localhost:8502  Grafana http://localhost:3000 (admin; its password: GF_SECURITY_ADMIN_PASSWORD in env.secret)  Prometheus http://localhost:9090"
  echo "Argo's login: paste the output of  echo \"Bearer \$(kubectl -n argo create token argo-server)\""
  trap 'kill 0' INT TERM
  wait
fi
