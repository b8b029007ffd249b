"""Shared fixtures: an isolated local home per test, real PostgreSQL databases, an MLflow
server, and one trained demo state shared by the slow tests.

With CI=true a missing service fails the test; elsewhere it is skipped with the reason.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from mlsys.common.settings import (
    AuthSettings,
    ElasticsearchSettings,
    MlflowSettings,
    PlatformSettings,
    PostgresSettings,
    RabbitmqSettings,
    RedisSettings,
    SearchSettings,
    StorageSettings,
)

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "dataset" / "beverage"
REAL_SALES = REAL / "item_sale_records_202107_202112.csv"
CI = os.environ.get("CI", "").lower() == "true"

# A private TMPDIR: MLflow and Streamlit write temporary files that must not collide with
# other runs on the same machine.
_TMP = tempfile.mkdtemp(prefix="mlsys-tests-")
os.environ["TMPDIR"] = _TMP
tempfile.tempdir = _TMP
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
# Argon2 at its production cost takes ~20 ms a hash; 2,848 users per load would dominate the
# suite. Hashes carry their own parameters, so this changes cost, never correctness.
os.environ["AUTH_HASH_MEMORY_KIB"] = "1024"
os.environ["AUTH_HASH_TIME_COST"] = "1"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_TMP, ignore_errors=True)


def require(reachable: bool, what: str) -> None:
    if reachable:
        return
    if CI:
        pytest.fail(f"{what} is required in CI (CI=true) but is not available")
    pytest.skip(f"{what} is not available")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run a component CLI exactly as the Makefile, Dockerfile and Argo steps do."""
    result = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        env=env or os.environ.copy(),
        cwd=ROOT,
        timeout=900,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed:\n{result.stdout}\n{result.stderr}")
    return result


def variables_read_by_components() -> set[str]:
    """Every environment variable some component reads: the settings classes, the MLflow
    server script, and MLflow's own switch. Deployment files may pass only these."""
    names = set()
    for settings in (
        PlatformSettings,
        PostgresSettings,
        MlflowSettings,
        RedisSettings,
        RabbitmqSettings,
        ElasticsearchSettings,
        SearchSettings,
        StorageSettings,
        AuthSettings,
    ):
        prefix = settings.model_config["env_prefix"]
        names |= {f"{prefix}{field}".upper() for field in settings.model_fields}
    names |= set(re.findall(r"\$\{(\w+)", (ROOT / "mlflow" / "serve.sh").read_text()))
    return names | {"MLFLOW_DISABLE_TELEMETRY"}


@pytest.fixture(autouse=True)
def local_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own embedded (local profile) state."""
    home = tmp_path / "mlsys-home"
    monkeypatch.setenv("MLSYS_PROFILE", "local")
    monkeypatch.setenv("MLSYS_HOME", str(home))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return home


# --- PostgreSQL ---------------------------------------------------------------------

PG = {"host": os.environ.get("POSTGRES_HOST", "127.0.0.1"), "port": 5432, "user": "postgres"}


def _admin():
    return psycopg.connect(dbname="postgres", autocommit=True, **PG)


def create_database(prefix: str) -> str:
    require(port_open(PG["host"], PG["port"]), "PostgreSQL on localhost:5432")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with _admin() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    with _admin() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_db():
    name = create_database("mlsys_test")
    yield name
    drop_database(name)


@pytest.fixture
def services_profile(postgres_db, monkeypatch) -> str:
    """The services profile against a fresh PostgreSQL database; returns its name."""
    monkeypatch.setenv("MLSYS_PROFILE", "services")
    monkeypatch.setenv("POSTGRES_HOST", PG["host"])
    monkeypatch.setenv("POSTGRES_PORT", str(PG["port"]))
    monkeypatch.setenv("POSTGRES_USER", PG["user"])
    monkeypatch.setenv("POSTGRES_DB", postgres_db)
    return postgres_db


# --- MLflow server ------------------------------------------------------------------


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server with its own PostgreSQL database (as in compose/k8s)."""
    database = create_database("mlflow_test")
    artifacts = tmp_path_factory.mktemp("mlflow-artifacts")
    port = free_port()
    env = os.environ | {
        "POSTGRES_HOST": PG["host"],
        "POSTGRES_PORT": str(PG["port"]),
        "POSTGRES_USER": PG["user"],
        "POSTGRES_PASSWORD": "",
        "MLFLOW_DB": database,
        "MLFLOW_ARTIFACTS_DESTINATION": str(artifacts),
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
    }
    log = open(artifacts.parent / "mlflow-server.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        ["bash", str(ROOT / "mlflow" / "serve.sh")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError((artifacts.parent / "mlflow-server.log").read_text()[-3000:])
            time.sleep(1)
        yield uri
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()
        drop_database(database)


# --- one trained demo state -----------------------------------------------------------


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory) -> Path:
    """The demo's jobs run once (local profile) and shared by the slow tests, read-only."""
    home = tmp_path_factory.mktemp("demo") / "mlsys-home"
    env = os.environ | {"MLSYS_PROFILE": "local", "MLSYS_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    run_cli(
        "mlsys.data_registration",
        "register",
        "--master-dir",
        str(REAL),
        "--sales",
        str(REAL_SALES),
        env=env,
    )
    run_cli(
        "mlsys.ml",
        "backtest",
        "--from",
        "2021-35",
        "--to",
        "2021-51",
        "--output",
        str(home / "backtest.json"),
        env=env,
    )
    run_cli("mlsys.ml", "train", env=env)
    run_cli("mlsys.ml", "predict", env=env)
    return home


# --- AIAnimals: a small generated dataset, loaded once and copied per test -----------------

AIANIMALS_POSTS = 600


@pytest.fixture(scope="session")
def aianimals_generated(tmp_path_factory) -> Path:
    """A small seeded activity (posts, likes, access logs) written by the real CLI."""
    directory = tmp_path_factory.mktemp("aianimals-generated")
    run_cli(
        "mlsys.batch", "generate", "--output", str(directory),
        "--posts", str(AIANIMALS_POSTS), "--searches", "200", "--seed", "7",
    )  # fmt: skip
    return directory


@pytest.fixture(scope="session")
def aianimals_loaded(tmp_path_factory, aianimals_generated) -> Path:
    """A local home with AIAnimals loaded and indexed, by the real CLIs (read-only)."""
    home = tmp_path_factory.mktemp("aianimals") / "mlsys-home"
    env = os.environ | {"MLSYS_PROFILE": "local", "MLSYS_HOME": str(home)}
    run_cli("mlsys.batch", "initial-load", "--generated", str(aianimals_generated), env=env)
    run_cli("mlsys.batch", "search-index", "--idle-seconds", "0.5", env=env)
    return home


@pytest.fixture
def aianimals_home(aianimals_loaded, local_home) -> Path:
    """A private copy of the loaded home: tests may like, post and unlike freely."""
    shutil.copytree(aianimals_loaded, local_home)
    return local_home


class ApiServer:
    """The API on uvicorn in a thread, spoken to over real HTTP."""

    def __init__(self):
        import uvicorn

        from mlsys.api.app import create_app

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(), port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_):
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextmanager
def serving_api():
    """The API of the current environment on uvicorn, and an HTTP client to it."""
    import httpx

    from mlsys.common.cache import _in_process_cache
    from mlsys.common.search import _index_for

    _in_process_cache.cache_clear()  # one cache and index per home, as in a fresh process
    _index_for.cache_clear()
    with ApiServer() as server, httpx.Client(base_url=server.url, timeout=30) as client:
        yield client, server


@pytest.fixture
def api(aianimals_home):
    """The API (local profile) over a private copy of the loaded AIAnimals home."""
    with serving_api() as (client, _):
        yield client


def login(client, handle_name: str = "dog_leigh", password: str = "password") -> dict:
    response = client.post(
        "/v0/user/login", json={"handle_name": handle_name, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"token": response.json()["token"]}


# --- Redis and RabbitMQ: a key prefix and a vhost per test -----------------------------------


@pytest.fixture
def redis_prefix(monkeypatch):
    require(port_open("127.0.0.1", 6379), "Redis on localhost:6379")
    import redis

    prefix = f"mlsys-test:{uuid.uuid4().hex[:10]}:"
    monkeypatch.setenv("REDIS_KEY_PREFIX", prefix)
    yield prefix
    client = redis.Redis()
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture
def rabbitmq_vhost(monkeypatch):
    require(
        port_open("127.0.0.1", 5672) and shutil.which("rabbitmqctl") is not None,
        "RabbitMQ on localhost:5672 (with rabbitmqctl)",
    )
    vhost = f"mlsys-test-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    monkeypatch.setenv("RABBITMQ_VHOST", vhost)
    yield vhost
    rabbitmqctl("delete_vhost", vhost)
