"""The monitoring configuration as shipped (infrastructure/monitoring): Prometheus' own
checks (`promtool`, Debian's `prometheus` package) pass, every alert rule fires and stays
silent where its unit tests say, and every metric a rule queries is one the code exports."""

import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.helpers.paths import ROOT
from tests.helpers.services import require

MONITORING = ROOT / "infrastructure" / "monitoring"
RULES = MONITORING / "alerts.yml"


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess:
    require(shutil.which("promtool") is not None, "promtool (Debian's prometheus package)")
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_rules_pass_promtools_check():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_fires_and_stays_silent_in_its_unit_tests():
    result = promtool("test", "rules", "alerts-test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    tests = yaml.safe_load((MONITORING / "alerts-test.yml").read_text())["tests"]
    firing, silent = set(), set()
    for group in tests:
        for case in group["alert_rule_test"]:
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    assert firing == silent == set(alert_names())


def alert_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def test_the_local_configuration_passes_promtools_check():
    result = promtool("check", "config", "prometheus-local.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kubernetes_configuration_passes_promtools_check(tmp_path):
    """Debian builds Prometheus without Kubernetes discovery (the official image, which
    the cluster runs, has it): the configuration is checked with its pod discovery
    replaced by a static target, so that everything else (relabelling, rule files) is
    Prometheus' own check."""
    config = yaml.safe_load((MONITORING / "prometheus-kubernetes.yml").read_text())
    pods = next(job for job in config["scrape_configs"] if job["job_name"] == "pods")
    discovery = pods.pop("kubernetes_sd_configs")
    assert discovery == [
        {"role": "pod", "namespaces": {"names": ["aianimals", "beverage-sales-forecasting"]}}
    ]
    pods["static_configs"] = [{"targets": ["pod:8000"]}]
    config["rule_files"] = [str(RULES)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_jobs_are_named_alike_on_kubernetes_and_on_one_machine():
    """The local jobs carry the names the pods' `app.kubernetes.io/name` gives them on the
    cluster: one rule and one dashboard read both."""
    local = yaml.safe_load((MONITORING / "prometheus-local.yml").read_text())
    deployments = {
        document["metadata"]["name"]
        for path in (ROOT / "infrastructure" / "manifests").glob("*/*.yaml")
        if "argo" not in path.parts
        for document in yaml.safe_load_all(path.read_text())
        if document and document.get("kind") == "Deployment"
    }
    jobs = {job["job_name"] for job in local["scrape_configs"]}
    assert jobs - {"prometheus", "pushgateway"} <= deployments


# --- what the rules query is exported -------------------------------------------------------

# PromQL's words that are not metric names.
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def queried_metrics(expression: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are neither a function
    (followed by `(`), a label list, a label matcher, a duration nor a keyword."""
    expression = re.sub(r'"[^"]*"', '""', expression)  # label values
    expression = re.sub(r"\{[^}]*\}", "", expression)  # label matchers
    expression = re.sub(r"\[[^\]]*\]", "", expression)  # ranges
    expression = re.sub(
        r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expression
    )
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", expression))
    return {name for name in names if name.lower() not in PROMQL_WORDS}


def exported_metrics() -> set[str]:
    """What the code's processes expose: the default registry (the API, consumers, the
    relay, served models) with the proxy's and the classifier's own, and what jobs push."""
    from prometheus_client import REGISTRY

    # Imported for what they register: the consumers' and the relay's metrics, the API's,
    # and the figure the predict job pushes.
    import mlsys.aianimals.messages
    import mlsys.api.metrics
    import mlsys.ml.predict  # noqa: F401
    from mlsys.ab_test_proxy.proxy import METRICS as PROXY
    from mlsys.common.metrics import JOB_FIGURES
    from mlsys.violation_detection.serve import METRICS as CLASSIFIER

    names = set(JOB_FIGURES)
    for registry in (REGISTRY, PROXY, CLASSIFIER):
        # Every exposed name, suffixes (_total, _bucket, ...) included; read without
        # collecting (the API's collector queries its database at collection).
        names |= set(registry._names_to_collectors)
    return names


def test_queried_metrics_are_found_in_expressions():
    assert queried_metrics(
        'sum by (job) (rate(http_requests_total{status="5xx"}[5m])) / '
        "sum by (job) (rate(http_requests_total[5m])) > 0.05"
    ) == {"http_requests_total"}
    assert queried_metrics("time() - job_last_success_timestamp_seconds > 8 * 86400") == {
        "job_last_success_timestamp_seconds"
    }
    assert queried_metrics(
        "max by (queue) (a_total) > 0 unless on (queue) sum by (queue) (increase(b[10m])) > 0"
    ) == {"a_total", "b"}


def test_the_rules_query_only_exported_metrics():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    queried = {
        name
        for group in groups
        for rule in group["rules"]
        for name in queried_metrics(rule["expr"])
    }
    assert queried - exported_metrics() == set()


def test_a_rule_on_a_metric_nobody_exports_is_caught():
    """The check's failing fixture: a misspelt name."""
    assert queried_metrics("consumer_dead_letter > 0") - exported_metrics() == {
        "consumer_dead_letter"
    }
