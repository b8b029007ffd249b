"""The monitoring configuration as shipped (infrastructure/manifests/monitoring, and
infrastructure/monitoring: the dashboards' code, the local Prometheus): Prometheus' own
checks (`promtool`, Debian's `prometheus` package) pass, every alert rule fires and stays
silent where its unit tests say, and every metric a rule queries is one the code exports."""

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import yaml

from tests.helpers.paths import ROOT
from tests.helpers.services import require

MONITORING = ROOT / "infrastructure" / "manifests" / "monitoring"
LOCAL = ROOT / "infrastructure" / "monitoring"
RULES = MONITORING / "alerts.yml"
_spec = importlib.util.spec_from_file_location("dashboards", LOCAL / "dashboards.py")
dashboards = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dashboards)


def promtool(*args: str, cwd: Path = MONITORING) -> subprocess.CompletedProcess:
    require(shutil.which("promtool") is not None, "promtool (Debian's prometheus package)")
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_rules_pass_promtools_check():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_fires_and_stays_silent_in_its_unit_tests():
    files = ("alerts-test.yml", "alerts-test-days.yml")  # by the minute; by the hour
    result = promtool("test", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr
    tests = [
        test for name in files for test in yaml.safe_load((MONITORING / name).read_text())["tests"]
    ]
    firing, silent = set(), set()
    for group in tests:
        for case in group["alert_rule_test"]:
            (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    assert firing == silent == set(alert_names())


def alert_names() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["alert"] for group in groups for rule in group["rules"]]


def test_the_local_configuration_passes_promtools_check():
    result = promtool("check", "config", "prometheus-local.yml", cwd=LOCAL)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_configuration_passes_promtools_check(tmp_path):
    """As compose mounts it: the cluster's rules beside it."""
    config = yaml.safe_load((LOCAL / "prometheus-compose.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    config["rule_files"] = [str(RULES)]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_scrapes_every_server_and_worker_it_runs():
    """Every long-running service of ours that serves /metrics (an HTTP server, or a
    worker given METRICS_PORT) is a job of compose's Prometheus, named as on the cluster."""
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())["services"]
    config = yaml.safe_load((LOCAL / "prometheus-compose.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    workers = {
        name
        for name, service in compose.items()
        if service.get("restart") == "unless-stopped"
        and "METRICS_PORT" in (service.get("environment") or {})
    }
    assert {"review-portal", "bi"} <= workers <= jobs
    assert {"api", "ab-test-proxy", "violation-classifier", "pushgateway"} <= jobs
    local = yaml.safe_load((LOCAL / "prometheus-local.yml").read_text())
    assert {job["job_name"] for job in local["scrape_configs"]} <= jobs


def test_the_kubernetes_configuration_passes_promtools_check(tmp_path):
    """Debian builds Prometheus without Kubernetes discovery (the official image, which
    the cluster runs, has it): the configuration is checked with its pod discovery
    replaced by a static target, so that everything else (relabelling, rule files) is
    Prometheus' own check."""
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
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
    local = yaml.safe_load((LOCAL / "prometheus-local.yml").read_text())
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
    # and the figures the predict and drift jobs push.
    import mlsys.aianimals.messages
    import mlsys.api.metrics
    import mlsys.ml.predict
    import mlsys.monitoring.__main__  # noqa: F401
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


# --- dashboards ------------------------------------------------------------------------------


def panels(board: dict) -> list[dict]:
    """The panels that query (rows only group them)."""
    return [panel for panel in board["panels"] if panel["type"] != "row"]


def expressions(board: dict) -> list[str]:
    return [target["expr"] for panel in panels(board) for target in panel["targets"]]


def committed_dashboards() -> dict[Path, dict]:
    return {
        path: json.loads(path.read_text())
        for path in sorted((MONITORING / "dashboards").glob("*.json"))
    }


def test_the_committed_dashboards_are_what_the_code_builds():
    rendered = dashboards.rendered()
    assert sorted(rendered) == sorted(committed_dashboards()), "run `make dashboards`"
    for path, text in rendered.items():
        assert path.read_text() == text, f"{path.name} differs: run `make dashboards`"


def test_one_dashboard_per_system():
    titles = {board["title"] for board in committed_dashboards().values()}
    assert titles == {
        "Forecasting",
        "AIAnimals: API and search",
        "Messages and jobs",
        "Moderation",
        "Experiments: the A/B test proxy",
    }


def test_each_dashboard_is_whole():
    """What Grafana needs to show a dashboard as built: a uid (the file's name), panels with
    ids unique in it, each on the provisioned data source with queries named A, B, ...,
    placed within the grid's 24 columns."""
    datasource = yaml.safe_load((MONITORING / "grafana" / "datasources.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for path, board in committed_dashboards().items():
        assert board["uid"] == path.stem
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)) and 0 not in ids, path.name
        for panel in panels(board):
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
            refs = [target["refId"] for target in panel["targets"]]
            assert refs == [chr(ord("A") + i) for i in range(len(refs))], panel["title"]
            assert all(target["expr"] for target in panel["targets"]), panel["title"]
            position = panel["gridPos"]
            assert position["x"] + position["w"] <= 24 and position["h"] > 0, panel["title"]


def test_every_panels_query_is_valid_promql(tmp_path):
    """promtool parses every query (as recording rules), Grafana's `$__rate_interval`
    given a value."""
    rules = [
        {"record": f"panel:{i}", "expr": expression.replace("$__rate_interval", "1m")}
        for i, expression in enumerate(
            e for board in committed_dashboards().values() for e in expressions(board)
        )
    ]
    (tmp_path / "panels.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]})
    )
    result = promtool("check", "rules", "panels.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dashboards_query_only_exported_metrics():
    queried = {
        name
        for board in committed_dashboards().values()
        for expression in expressions(board)
        for name in queried_metrics(expression)
    }
    assert queried - exported_metrics() == set()


def test_latency_is_a_quantile_not_time_spent_per_second():
    """The systems this project re-creates plotted `rate(..._seconds_sum)`: time spent
    per second, not latency. Every panel on a duration histogram takes its quantile."""
    for board in committed_dashboards().values():
        for expression in expressions(board):
            if "duration_seconds_" in expression:  # a histogram's series
                assert "histogram_quantile" in expression and "_bucket" in expression, expression


def test_the_cluster_gets_every_dashboard_and_the_rules_prometheus_reads():
    """The monitoring namespace's ConfigMaps hold each built dashboard (within a
    ConfigMap's 1 MiB) and Prometheus' configuration with the rules where it reads them."""
    generators = {
        generator["name"]: generator["files"]
        for generator in yaml.safe_load((MONITORING / "kustomization.yaml").read_text())[
            "configMapGenerator"
        ]
    }
    built = sorted(f"dashboards/{path.name}" for path in committed_dashboards())
    assert sorted(generators["grafana-dashboards"]) == built
    assert sum((MONITORING / name).stat().st_size for name in built) < 1024 * 1024
    assert sorted(generators["prometheus-config"]) == ["alerts.yml", "prometheus.yml"]
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
