"""Prometheus' own programs from Debian's packages (`prometheus`, `prometheus-pushgateway`),
each started on a free port for a test, and reading what they hold."""

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.http import wait_for_url
from tests.helpers.services import free_port, require


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """An exposition's samples: (name, labels) -> value."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    response = httpx.get(url, timeout=5)
    response.raise_for_status()
    return samples(response.text)


@contextmanager
def pushgateway(log: Path) -> Iterator[str]:
    """A Pushgateway in memory (no persistence file); yields its URL."""
    require(shutil.which("prometheus-pushgateway") is not None, "prometheus-pushgateway")
    port = free_port()
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                "prometheus-pushgateway",
                f"--web.listen-address=127.0.0.1:{port}",
                "--persistence.file=",  # Debian's default is a file in /var/lib
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_url(f"http://127.0.0.1:{port}/-/ready", timeout=20, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def prometheus(config: dict, directory: Path) -> Iterator[str]:
    """Prometheus with `config` (its rule files absolute paths), its data and log in
    `directory`; yields its URL once it answers."""
    import yaml

    require(shutil.which("prometheus") is not None, "prometheus (Debian's package)")
    port = free_port()
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    with (directory / "prometheus.log").open("w") as output:
        process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_url(f"{url}/-/ready", timeout=60, process=process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def query(url: str, expression: str) -> list[dict]:
    """An instant query through Prometheus' HTTP API: [{"metric": {...}, "value": [t, v]}]."""
    response = httpx.get(f"{url}/api/v1/query", params={"query": expression}, timeout=10)
    response.raise_for_status()
    return response.json()["data"]["result"]


def firing(url: str) -> list[dict]:
    """The labels of every firing alert."""
    response = httpx.get(f"{url}/api/v1/alerts", timeout=10)
    response.raise_for_status()
    return [a["labels"] for a in response.json()["data"]["alerts"] if a["state"] == "firing"]
