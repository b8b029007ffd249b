"""Every server's request metrics (mlsys.common.metrics): the names and labels
prometheus-fastapi-instrumentator gives them, a handler per route template, and nothing a
client chooses in a label."""

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from mlsys.common.metrics import HttpMetrics, HttpMetricsMiddleware
from tests.helpers.http import ApiServer


@pytest.fixture
def served():
    registry = CollectorRegistry()
    app = FastAPI()

    @app.get("/animal/{animal_id}")
    def animal(animal_id: str) -> dict:
        return {"id": animal_id}

    @app.post("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    app.add_middleware(HttpMetricsMiddleware, metrics=HttpMetrics(registry))
    with ApiServer(app) as server, httpx.Client(base_url=server.url) as client:
        yield client, registry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_requests_are_counted_by_route_template_method_and_status_class(served):
    client, registry = served
    for animal_id in ("a", "b", "c"):
        assert client.get(f"/animal/{animal_id}").status_code == 200
    assert client.get("/no/such/path/9f8e").status_code == 404
    assert client.post("/boom").status_code == 500
    requests = "http_requests_total"
    assert value(registry, requests, handler="/animal/{animal_id}", method="GET", status="2xx") == 3
    assert value(registry, requests, handler="none", method="GET", status="4xx") == 1
    assert value(registry, requests, handler="/boom", method="POST", status="5xx") == 1
    seconds = "http_request_duration_seconds_count"
    assert value(registry, seconds, handler="/animal/{animal_id}", method="GET") == 3
    handlers = {
        sample.labels["handler"]
        for family in registry.collect()
        for sample in family.samples
        if "handler" in sample.labels
    }
    assert handlers == {"/animal/{animal_id}", "none", "/boom"}  # never a client's path


def test_each_server_registers_its_own_metrics():
    """Two registries (the proxy's and the classifier's beside the default one) each hold
    the two metrics; one registry refuses them twice (one HttpMetrics per server)."""
    first, second = CollectorRegistry(), CollectorRegistry()
    HttpMetrics(first)
    HttpMetrics(second)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        HttpMetrics(first)
