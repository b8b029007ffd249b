"""A live Prometheus (Debian's package) with the shipped configuration and alert rules,
against the AIAnimals services profile on this machine: it scrapes the API and a consumer,
reads a job's run from a real Pushgateway, and fires rules for real (dead letters, a failed
job). What `make monitoring` runs, on the tests' own ports."""

import os
import subprocess
import sys

import pika
import pytest
import yaml

from tests.helpers.aianimals import services_deployment, wait_until
from tests.helpers.cli import local_env, run_cli
from tests.helpers.monitoring import firing, prometheus, pushgateway, query
from tests.helpers.paths import ROOT
from tests.helpers.services import free_port

pytestmark = pytest.mark.integration

LOCAL = ROOT / "infrastructure" / "monitoring"


def shipped_configuration(targets: dict[str, str]) -> dict:
    """prometheus-local.yml with its jobs pointed at `targets` (job -> host:port) and the
    others left out (this machine may serve something else on the usual ports), scraped and
    evaluated every second."""
    config = yaml.safe_load((LOCAL / "prometheus-local.yml").read_text())
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    config["rule_files"] = [str((LOCAL / rule).resolve()) for rule in config["rule_files"]]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name, target in targets.items():
        jobs.setdefault(name, {"job_name": name})["static_configs"] = [{"targets": [target]}]
    config["scrape_configs"] = [jobs[name] for name in targets]
    return config


def test_prometheus_scrapes_the_platform_and_fires_its_rules(aianimals_generated, tmp_path):
    home = tmp_path / "mlsys-home"
    with (
        services_deployment(home, aianimals_generated) as api,
        pushgateway(tmp_path / "pushgateway.log") as gateway,
    ):
        # The search-index consumer as deployed, serving its metrics.
        consumer_port = free_port()
        with (tmp_path / "consumer.log").open("w") as log:
            consumer = subprocess.Popen(
                [sys.executable, "-m", "mlsys.batch", "search-index"],
                cwd=ROOT,
                env=os.environ | {"METRICS_PORT": str(consumer_port)},
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        try:
            wait_until(
                lambda: "consuming queue=" in (tmp_path / "consumer.log").read_text(), timeout=60
            )
            # A job's failed run, pushed (the registration of a file that is not there).
            failed = run_cli(
                "mlsys.data_registration", "register", "--sales", str(tmp_path / "missing.csv"),
                env=local_env(tmp_path / "job-home") | {"METRICS_PUSHGATEWAY_URL": gateway},
                check=False,
            )  # fmt: skip
            assert failed.returncode == 1, failed.stderr
            # A message no retry can fix (not JSON): dead-lettered at once.
            from mlsys.aianimals.messages import EXCHANGE, Topic, rabbitmq_connection

            connection = rabbitmq_connection()
            connection.channel().basic_publish(
                EXCHANGE, Topic.animal_created, b"{not json", pika.BasicProperties()
            )
            connection.close()
            assert api.get("/v0/health-check").status_code == 200

            config = shipped_configuration(
                {
                    "api": api.base_url.netloc.decode(),
                    "search-index": f"127.0.0.1:{consumer_port}",
                    "pushgateway": gateway.removeprefix("http://"),
                }
            )
            (tmp_path / "prometheus").mkdir()
            with prometheus(config, tmp_path / "prometheus") as url:
                wait_until(lambda: len(query(url, "up == 1")) == 3, timeout=60)
                # Read back through Prometheus' HTTP API: the API's requests, the
                # consumer's dead letter, the job's outcome.
                requests = query(url, 'http_requests_total{job="api",handler="/v0/health-check"}')
                assert requests and float(requests[0]["value"][1]) >= 1
                wait_until(
                    lambda: query(url, 'consumer_dead_letters{queue="search-index"} == 1'),
                    timeout=60,
                )
                outcome = query(url, 'job_success{job="data-registration-register"}')
                assert [float(s["value"][1]) for s in outcome] == [0.0]
                # The rules fire for real.
                wait_until(
                    lambda: (
                        {
                            (alert["alertname"], alert.get("queue") or alert.get("job"))
                            for alert in firing(url)
                        }
                        >= {
                            ("DeadLetters", "search-index"),
                            ("JobFailed", "data-registration-register"),
                        }
                    ),
                    timeout=60,
                )
        finally:
            consumer.terminate()
            consumer.wait(timeout=30)
