"""The NetworkPolicies allow exactly the flows the platform needs (issue 10, item 6): every
namespace denies by default, each flow below is allowed at both ends (the source's egress
and the destination's ingress), and the flows a compromised pod would want are not."""

from pathlib import Path

import pytest
import yaml

from tests.helpers.paths import ROOT

MANIFESTS = ROOT / "infrastructure/manifests"
NAMESPACES = ["data", "mlflow", "search-engine", "beverage-sales-forecasting", "aianimals",
              "monitoring"]  # fmt: skip
ARGO_STEP = {"workflows.argoproj.io/workflow": "forecasting-28"}  # how Argo labels a step
WORKER = {"mlsys.io/metrics": "worker"}  # a pod that serves its metrics on METRICS_PORT


def app(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name}


# (source namespace, source pod labels, destination namespace, destination labels, port)
NEEDED = [
    ("mlflow", app("mlflow"), "data", app("postgres"), 5432),
    ("beverage-sales-forecasting", app("bi"), "data", app("postgres"), 5432),
    ("beverage-sales-forecasting", app("bi"), "mlflow", app("mlflow"), 5000),
    ("beverage-sales-forecasting", app("initial-registration"), "data", app("postgres"), 5432),
    ("beverage-sales-forecasting", app("beverage-migrate"), "data", app("postgres"), 5432),
    ("beverage-sales-forecasting", ARGO_STEP, "data", app("postgres"), 5432),
    ("beverage-sales-forecasting", ARGO_STEP, "mlflow", app("mlflow"), 5000),
    ("aianimals", app("api"), "data", app("postgres"), 5432),
    ("aianimals", app("api"), "aianimals", app("redis"), 6379),
    ("aianimals", app("api"), "search-engine", app("elasticsearch"), 9200),
    ("aianimals", app("api"), "mlflow", app("mlflow"), 5000),  # the search ranker
    ("aianimals", app("aianimals-initial-load"), "data", app("postgres"), 5432),
    ("aianimals", app("aianimals-migrate"), "data", app("postgres"), 5432),
    ("aianimals", app("outbox-relay"), "data", app("postgres"), 5432),
    ("aianimals", app("outbox-relay"), "aianimals", app("rabbitmq"), 5672),
    ("aianimals", app("search-index"), "data", app("postgres"), 5432),
    ("aianimals", app("search-index"), "aianimals", app("rabbitmq"), 5672),
    ("aianimals", app("search-index"), "aianimals", app("redis"), 6379),
    ("aianimals", app("search-index"), "search-engine", app("elasticsearch"), 9200),
    ("aianimals", app("ranking-features"), "data", app("postgres"), 5432),
    ("aianimals", app("ranking-features"), "aianimals", app("rabbitmq"), 5672),
    ("aianimals", app("image-index"), "data", app("postgres"), 5432),
    ("aianimals", app("image-index"), "aianimals", app("rabbitmq"), 5672),
    ("aianimals", app("image-index"), "mlflow", app("mlflow"), 5000),  # the champion
    ("aianimals", app("account-mail"), "data", app("postgres"), 5432),
    ("aianimals", app("account-mail"), "aianimals", app("rabbitmq"), 5672),
    ("aianimals", ARGO_STEP, "data", app("postgres"), 5432),  # the search-ranker workflow
    ("aianimals", ARGO_STEP, "mlflow", app("mlflow"), 5000),
    ("aianimals", app("violation-classifier"), "mlflow", app("mlflow"), 5000),
    ("aianimals", app("violation-detection"), "data", app("postgres"), 5432),
    ("aianimals", app("violation-detection"), "aianimals", app("rabbitmq"), 5672),
    ("aianimals", app("violation-detection"), "aianimals", app("violation-classifier"), 8100),
    ("aianimals", app("review-portal"), "data", app("postgres"), 5432),
    ("ingress-nginx", {}, "aianimals", app("review-portal"), 8502),  # the moderators
    ("ingress-nginx", {}, "aianimals", app("api"), 8000),  # the app's traffic
    ("ingress-nginx", {}, "aianimals", app("ab-test-proxy"), 8080),  # ... in an experiment
    ("aianimals", app("ab-test-proxy"), "aianimals", app("api"), 8000),
    ("ingress-nginx", {}, "beverage-sales-forecasting", app("bi"), 8501),
    ("monitoring", app("prometheus"), "aianimals", app("violation-classifier"), 8100),
    ("monitoring", app("prometheus"), "aianimals", app("api"), 8000),
    ("monitoring", app("prometheus"), "aianimals", app("ab-test-proxy"), 8080),
    ("monitoring", app("prometheus"), "monitoring", app("pushgateway"), 9091),
    ("monitoring", app("grafana"), "monitoring", app("prometheus"), 9090),
    ("ingress-nginx", {}, "monitoring", app("grafana"), 3000),
    # Each batch job's run, to the Pushgateway (mlsys.common.metrics.job).
    ("beverage-sales-forecasting", ARGO_STEP, "monitoring", app("pushgateway"), 9091),
    ("aianimals", ARGO_STEP, "monitoring", app("pushgateway"), 9091),
    (
        "beverage-sales-forecasting",
        app("initial-registration"),
        "monitoring",
        app("pushgateway"),
        9091,
    ),
    ("aianimals", app("aianimals-initial-load"), "monitoring", app("pushgateway"), 9091),
]
REFUSED = [
    ("aianimals", app("api"), "aianimals", app("rabbitmq"), 5672),  # the API uses the outbox
    ("aianimals", app("outbox-relay"), "aianimals", app("redis"), 6379),
    ("aianimals", app("ab-test-proxy"), "data", app("postgres"), 5432),
    ("aianimals", app("ranking-features"), "search-engine", app("elasticsearch"), 9200),
    ("aianimals", app("aianimals-initial-load"), "search-engine", app("elasticsearch"), 9200),
    ("aianimals", app("aianimals-migrate"), "aianimals", app("rabbitmq"), 5672),
    ("aianimals", app("redis"), "data", app("postgres"), 5432),
    ("aianimals", app("search-index"), "mlflow", app("mlflow"), 5000),
    ("aianimals", app("ranking-features"), "mlflow", app("mlflow"), 5000),
    ("aianimals", app("image-index"), "aianimals", app("redis"), 6379),
    ("aianimals", app("image-index"), "search-engine", app("elasticsearch"), 9200),
    ("aianimals", ARGO_STEP, "aianimals", app("rabbitmq"), 5672),
    ("aianimals", app("violation-classifier"), "data", app("postgres"), 5432),  # no need
    ("aianimals", app("review-portal"), "aianimals", app("rabbitmq"), 5672),  # the outbox
    ("aianimals", app("review-portal"), "aianimals", app("violation-classifier"), 8100),
    ("aianimals", app("api"), "aianimals", app("violation-classifier"), 8100),
    ("aianimals", ARGO_STEP, "aianimals", app("redis"), 6379),
    ("aianimals", app("account-mail"), "aianimals", app("redis"), 6379),
    ("aianimals", app("account-mail"), "mlflow", app("mlflow"), 5000),
    ("aianimals", ARGO_STEP, "default", {}, 443),  # only the API server (deploy.sh's ipBlock)
    ("beverage-sales-forecasting", ARGO_STEP, "default", {}, 6443),
    ("beverage-sales-forecasting", app("bi"), "aianimals", app("redis"), 6379),
    ("beverage-sales-forecasting", app("bi"), "search-engine", app("elasticsearch"), 9200),
    ("search-engine", app("elasticsearch"), "data", app("postgres"), 5432),
    ("default", {}, "data", app("postgres"), 5432),  # anything else in the cluster
    ("default", {}, "aianimals", app("redis"), 6379),
    ("default", {}, "mlflow", app("mlflow"), 5000),
    ("default", {}, "aianimals", app("violation-classifier"), 8100),
    ("data", app("postgres"), "aianimals", app("api"), 9999),  # a port nobody serves
    # The API and the proxy believe X-Forwarded-For from the pod network: only the ingress
    # controller, the proxy (to the API) and Prometheus may connect (issue 32, item 1).
    ("default", {}, "aianimals", app("api"), 8000),
    ("aianimals", app("search-index"), "aianimals", app("api"), 8000),
    ("default", {}, "aianimals", app("ab-test-proxy"), 8080),
    ("aianimals", app("api"), "aianimals", app("ab-test-proxy"), 8080),
    # A worker's metrics are Prometheus' alone; the Pushgateway takes the jobs' runs only.
    ("aianimals", app("api"), "monitoring", app("pushgateway"), 9091),
    ("beverage-sales-forecasting", app("bi"), "monitoring", app("pushgateway"), 9091),
    ("default", {}, "monitoring", app("grafana"), 3000),
    ("aianimals", app("api"), "monitoring", app("prometheus"), 9090),
    ("aianimals", app("api"), "aianimals", app("search-index") | WORKER, 9100),
    ("default", {}, "aianimals", app("outbox-relay") | WORKER, 9100),
]


def policies(namespace: str) -> list[dict]:
    path = MANIFESTS / namespace / "network-policies.yaml"
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def selects(selector: dict, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "Exists", "only Exists is evaluated here"
        if expression["key"] not in labels:
            return False
    return True


def peer_matches(peer: dict, own_namespace: str, namespace: str, labels: dict) -> bool:
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}):
            return False
    elif namespace != own_namespace:
        return False  # a bare podSelector means pods of the policy's own namespace
    return selects(peer.get("podSelector", {}), labels)


def allowed(direction: str, own: str, pod: dict, other: str, other_pod: dict, port: int) -> bool:
    """Whether `pod` of namespace `own` may send (egress) / receive (ingress) the flow."""
    peers_key = "to" if direction == "egress" else "from"
    governing = [
        p for p in policies(own)
        if direction.capitalize() in p["spec"]["policyTypes"]
        and selects(p["spec"]["podSelector"], pod)
    ]  # fmt: skip
    assert governing, f"{own}: no {direction} policy selects {pod}: default deny is missing"
    for policy in governing:
        for rule in policy["spec"].get(direction, []):
            ports = {p["port"] for p in rule.get("ports", [])}
            peers = rule.get(peers_key)
            if ports and port not in ports:
                continue
            if not peers or any(peer_matches(p, own, other, other_pod) for p in peers):
                return True
    return False


def flow(source_ns, source, target_ns, target, port) -> bool:
    out = source_ns not in NAMESPACES or allowed(
        "egress", source_ns, source, target_ns, target, port
    )  # namespaces outside the platform have their own policies (none here)
    return out and allowed("ingress", target_ns, target, source_ns, source, port)


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_every_namespace_denies_by_default_and_allows_dns(namespace):
    by_name = {p["metadata"]["name"]: p["spec"] for p in policies(namespace)}
    assert by_name["default-deny"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    dns = by_name["allow-dns"]["egress"][0]
    assert {p["port"] for p in dns["ports"]} == {53}
    kustomization = yaml.safe_load((MANIFESTS / namespace / "kustomization.yaml").read_text())
    assert "network-policies.yaml" in kustomization["resources"]


@pytest.mark.parametrize("needed", NEEDED, ids=lambda f: f"{f[0]}/{f[1]}->{f[2]}:{f[4]}")
def test_each_flow_the_platform_needs_is_allowed(needed):
    assert flow(*needed)


@pytest.mark.parametrize("refused", REFUSED, ids=lambda f: f"{f[0]}/{f[1]}->{f[2]}:{f[4]}")
def test_flows_nobody_needs_are_refused(refused):
    assert not flow(*refused)


def test_every_pod_of_the_platform_is_governed_by_a_named_policy():
    """Each workload's pod labels appear in a policy of its own, beside the default deny:
    a new workload without one is noticed (it could then reach nothing but DNS)."""
    for namespace in NAMESPACES:
        named = [p for p in policies(namespace) if p["metadata"]["name"] not in
                 {"default-deny", "allow-dns"}]  # fmt: skip
        for path in Path(MANIFESTS / namespace).glob("*.yaml"):
            for document in yaml.safe_load_all(path.read_text()):
                template = (document or {}).get("spec", {}).get("template")
                if not template:
                    continue
                labels = template.get("metadata", {}).get("labels", {})
                assert any(selects(p["spec"]["podSelector"], labels) for p in named), (
                    f"{namespace}/{path.name}: no policy for pods {labels}"
                )


def test_prometheus_may_scrape_every_pod_that_asks_to_be_scraped():
    """A pod annotated prometheus.io/scrape admits Prometheus (namespace monitoring) on the
    annotated port: the classifier's server did not."""
    scraped = []
    for namespace in NAMESPACES:
        for path in Path(MANIFESTS / namespace).glob("*.yaml"):
            for document in yaml.safe_load_all(path.read_text()):
                template = (document or {}).get("spec", {}).get("template", {})
                annotations = template.get("metadata", {}).get("annotations", {})
                if annotations.get("prometheus.io/scrape") == "true":
                    labels = template["metadata"]["labels"]
                    port = int(annotations["prometheus.io/port"])
                    scraped.append(labels["app.kubernetes.io/name"])
                    assert flow("monitoring", app("prometheus"), namespace, labels, port), labels
    assert {"api", "violation-classifier", "outbox-relay", "search-index", "ranking-features",
            "image-index", "account-mail", "violation-detection"} <= set(scraped)  # fmt: skip
