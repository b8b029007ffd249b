"""Every server's request metrics (mlsys.common.metrics): the names and labels
prometheus-fastapi-instrumentator gives them, a handler per route template, and nothing a
client chooses in a label."""

import time

import httpx
import pytest
import typer
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from mlsys.common.metrics import HttpMetrics, HttpMetricsMiddleware, job, report_items
from tests.helpers.cli import local_env, run_cli
from tests.helpers.http import ApiServer
from tests.helpers.monitoring import pushgateway, scrape
from tests.helpers.services import free_port


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


# --- batch jobs through a real Pushgateway ------------------------------------------------


@pytest.fixture
def gateway(tmp_path, monkeypatch):
    with pushgateway(tmp_path / "pushgateway.log") as url:
        monkeypatch.setenv("METRICS_PUSHGATEWAY_URL", url)
        yield url


def pushed(url: str, name: str, job_name: str) -> float | None:
    return scrape(f"{url}/metrics").get((name, frozenset({("job", job_name), ("instance", "")})))


def run_jobs(*arguments: str) -> list[int]:
    """Commands decorated as jobs, run through Typer as a component's CLI runs them."""
    app = typer.Typer()

    @app.command()
    @job
    def load(fail: bool = False, exit_code: int = 0, rows: int = 0) -> None:
        report_items(rows)
        if fail:
            raise RuntimeError("the job's own bug")
        if exit_code:
            raise typer.Exit(exit_code)

    @app.command()
    @job
    def other() -> None:
        pass

    runner = CliRunner()
    return [runner.invoke(app, argument.split()).exit_code for argument in arguments]


def test_a_job_pushes_its_run_and_keeps_its_last_success(gateway):
    """Job `<component>-<command>` (here `test-metrics-load`, after this module): duration,
    outcome, rows; a failure after a success leaves the success's time in place (the alert
    on a job not succeeding within its schedule reads it)."""
    assert run_jobs("load --rows 1234") == [0]
    succeeded_at = pushed(gateway, "job_last_success_timestamp_seconds", "test-metrics-load")
    assert succeeded_at is not None and abs(succeeded_at - time.time()) < 60
    assert pushed(gateway, "job_success", "test-metrics-load") == 1
    assert pushed(gateway, "job_items", "test-metrics-load") == 1234
    assert pushed(gateway, "job_duration_seconds", "test-metrics-load") >= 0
    assert pushed(gateway, "job_last_failure_timestamp_seconds", "test-metrics-load") is None

    for failure in ("load --exit-code 1", "load --fail"):  # an exit code; an exception
        assert run_jobs(failure) == [1]
        assert pushed(gateway, "job_success", "test-metrics-load") == 0
        failed_at = pushed(gateway, "job_last_failure_timestamp_seconds", "test-metrics-load")
        assert failed_at is not None and failed_at >= succeeded_at
        last_success = pushed(gateway, "job_last_success_timestamp_seconds", "test-metrics-load")
        assert last_success == succeeded_at
    assert pushed(gateway, "job_success", "test-metrics-other") is None  # its own group


def test_a_job_succeeds_whether_or_not_its_metrics_can_be_pushed(monkeypatch, caplog):
    monkeypatch.setenv("METRICS_PUSHGATEWAY_URL", f"http://127.0.0.1:{free_port()}")
    assert run_jobs("load", "load --exit-code 3") == [0, 3]
    assert "could not push job=test-metrics-load" in caplog.text


@pytest.mark.integration
def test_a_components_command_pushes_as_its_job(gateway, tmp_path):
    """A job run as deployed (`python -m mlsys.data_registration register`) is pushed as
    `data-registration-register`; a missing file is a failed run."""
    result = run_cli(
        "mlsys.data_registration",
        "register",
        "--sales",
        str(tmp_path / "missing.csv"),
        env=local_env(tmp_path) | {"METRICS_PUSHGATEWAY_URL": gateway},
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert pushed(gateway, "job_success", "data-registration-register") == 0
