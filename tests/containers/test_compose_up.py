"""`make up` on a machine that cannot pull: docker-compose.yaml as users run it, with
infrastructure/standins/compose.yaml (the Debian stand-ins, no Elasticsearch) and the
test's small seeded configuration (compose-small.yaml: less data, shorter training). The
whole stack comes up: every healthcheck healthy and every job completed; the API and the
BI (in Chromium) answer a login through their published ports; Prometheus scrapes every
server and worker and has the jobs' runs from the Pushgateway; it comes down leaving no
container, network or volume behind."""

import io
import json
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from infrastructure.images import docker
from tests.containers.conftest import built
from tests.helpers.http import link_token, mailed
from tests.helpers.manifests import copy_with_secrets
from tests.helpers.paths import ROOT
from tests.helpers.services import port_open

pytestmark = [pytest.mark.container, pytest.mark.slow]

PUBLISHED = {"mlflow": 5000, "bi": 8501, "review-portal": 8502, "api": 8000, "ab-test-proxy": 8080,
             "prometheus": 9090, "pushgateway": 9091}  # fmt: skip
# What compose's Prometheus scrapes (every server and worker, and the Pushgateway).
SCRAPED = {
    job["job_name"]
    for job in yaml.safe_load(
        (ROOT / "infrastructure/monitoring/prometheus-compose.yml").read_text()
    )["scrape_configs"]
}
SECONDS_TO_COME_UP = 1500


class Stack:
    def __init__(self, folder: Path):
        manifests, self.folder = copy_with_secrets(folder), folder
        self.secrets = dict(
            line.split("=", 1) for line in (manifests / "env.secret").read_text().split()
        )
        self.project = f"mlsys-test-{uuid.uuid4().hex[:8]}"
        registry, tag = built()
        self.env = {"REGISTRY": registry, "TAG": tag, "PATH": "/usr/local/bin:/usr/bin:/bin"}
        self.command = [
            docker(), "compose", "-p", self.project, "-f", "docker-compose.yaml",
            "-f", "infrastructure/standins/compose.yaml",
            "-f", str(Path(__file__).with_name("compose-small.yaml")),
            "--env-file", str(manifests / "env.secret"),
        ]  # fmt: skip

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self.command, *args], cwd=ROOT, env=self.env, check=check,
                              capture_output=True, text=True, timeout=600)  # fmt: skip

    def mailed_link(self, user: dict, timeout: float = 120) -> str:
        """The token of the link mailed to `user`'s address: MAIL_URL is file:///tmp/mail
        until `make secrets` is given an SMTP relay, so it is in the mailer's container."""
        folder, deadline = self.folder / "mail-copy", time.monotonic() + timeout
        while True:
            copied = subprocess.run([*self.command, "exec", "-T", "account-mail", "tar", "-C",
                                     "/tmp", "-cf", "-", "mail"], cwd=ROOT, env=self.env,
                                    capture_output=True, timeout=60)  # fmt: skip
            if copied.returncode == 0:
                with tarfile.open(fileobj=io.BytesIO(copied.stdout)) as archive:
                    archive.extractall(folder, filter="data")
                try:
                    return link_token(mailed(user["email_address"], folder / "mail", timeout=0))
                except AssertionError:
                    pass
            assert time.monotonic() < deadline, copied.stderr.decode()[-2000:]
            time.sleep(2)

    def services(self) -> dict[str, dict]:
        return json.loads(self.compose("config", "--format", "json").stdout)["services"]

    def containers(self) -> dict[str, dict]:
        lines = self.compose("ps", "--all", "--format", "json").stdout.splitlines()
        return {c["Service"]: c for c in map(json.loads, filter(None, lines))}

    def waiting_for(self, services: dict[str, dict]) -> list[str]:
        """What is not yet up: each service healthy if it has a healthcheck, completed if
        it is a job (restarted only on failure), else running."""
        containers, waiting = self.containers(), []
        for name, service in services.items():
            container = containers.get(name)
            if container is None:
                waiting.append(f"{name}: not created")
            elif str(service.get("restart", "")).startswith("on-failure"):
                if container["State"] != "exited" or container["ExitCode"] != 0:
                    waiting.append(f"{name}: {container['State']} ({container['ExitCode']})")
            elif "healthcheck" in service:
                if container["Health"] != "healthy":
                    waiting.append(f"{name}: {container['State']}, {container['Health']}")
            elif container["State"] != "running":
                waiting.append(f"{name}: {container['State']}")
        return waiting

    def leftovers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        found = []
        for kind in ("container", "network", "volume"):
            listed = subprocess.run(
                [docker(), kind, "ls", "-q", *(["-a"] if kind == "container" else []),
                 "--filter", label],
                capture_output=True, text=True, check=True,
            ).stdout.split()  # fmt: skip
            found += [f"{kind} {name}" for name in listed]
        return found


def anonymous_volumes() -> set[str]:
    listed = subprocess.run([docker(), "volume", "ls", "-q", "--filter", "dangling=true"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    return {name for name in listed.stdout.split() if len(name) == 64}


@pytest.fixture
def stack(images, tmp_path):
    taken = [f"{name} :{port}" for name, port in PUBLISHED.items() if port_open("127.0.0.1", port)]
    assert not taken, f"the compose stack publishes ports already taken here: {taken}"
    before = anonymous_volumes()
    stack = Stack(tmp_path)
    try:
        stack.compose("up", "--detach")
        yield stack
    finally:
        stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "20", check=False)
        assert stack.leftovers() == []
        assert anonymous_volumes() <= before


def test_the_stack_comes_up_and_answers_through_its_published_ports(stack, browser):
    services = stack.services()
    assert "elasticsearch" not in services  # its profile is off
    deadline = time.monotonic() + SECONDS_TO_COME_UP
    while waiting := stack.waiting_for(services):
        if time.monotonic() > deadline:
            logs = stack.compose("logs", "--tail", "30", check=False).stdout[-6000:]
            raise AssertionError(f"not up in {SECONDS_TO_COME_UP} s: {waiting}\n{logs}")
        time.sleep(5)
    with httpx.Client(base_url="http://127.0.0.1:8000", timeout=30) as api:
        user = {"handle_name": "compose_test", "email_address": "compose@example.com",
                "password": "a long password", "age": 30, "gender": 1}  # fmt: skip
        assert api.post("/v0/user", json=user).status_code == 202
        verified = api.post("/v0/user/verify", json={"token": stack.mailed_link(user)})
        assert verified.status_code == 201, verified.text
        login = {"handle_name": user["handle_name"], "password": user["password"]}
        token = {"token": api.post("/v0/user/login", json=login).json()["token"]}
        found = api.post("/v0/animal/search", json={"phrases": ["ねこ"]}, headers=token)
        assert found.status_code == 200 and found.json()["hits"] > 0, found.text
    # Prometheus scrapes every server and worker, with the Pushgateway's jobs.
    with httpx.Client(base_url="http://127.0.0.1:9090", timeout=30) as prometheus:

        def query(expression: str) -> dict[str, str]:
            answer = prometheus.get("/api/v1/query", params={"query": expression}).json()
            return {r["metric"]["job"]: r["value"][1] for r in answer["data"]["result"]}

        deadline = time.monotonic() + 120
        while (up := query("up")) != dict.fromkeys(SCRAPED, "1"):
            assert time.monotonic() < deadline, f"scraped: {up}, wanted all of {SCRAPED} up"
            time.sleep(5)
        ran = query("job_success")
        assert ran.get("ml-train") == "1" and ran.get("monitoring-forecaster-drift") == "1", ran
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto("http://127.0.0.1:8501/")
    page.get_by_label("User name").fill("admin")
    page.get_by_role("textbox", name="Password").fill(stack.secrets["BI_PASSWORD"])
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Sales explorer").wait_for(timeout=60_000)
