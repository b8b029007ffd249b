"""Prometheus' own programs from Debian's packages (`prometheus`, `prometheus-pushgateway`),
each started on a free port for a test, and reading what they hold."""

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.aianimals import wait_until
from tests.helpers.services import free_port, port_open, require


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
        wait_until(lambda: port_open("127.0.0.1", port), timeout=20)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)
