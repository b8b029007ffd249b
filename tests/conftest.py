"""Shared fixtures: an isolated local home per test, real PostgreSQL databases, Redis key
prefixes and RabbitMQ vhosts, an MLflow server, a browser, and the trained demo and loaded
AIAnimals states shared by the slow tests. Helpers live in tests/helpers.
"""

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.helpers.aianimals import AIANIMALS_POSTS
from tests.helpers.browser import chromium
from tests.helpers.cli import local_env, run_cli
from tests.helpers.http import serving_api, wait_for_url
from tests.helpers.paths import REAL, REAL_SALES, ROOT
from tests.helpers.services import (
    MLFLOW_ADMIN,
    PG,
    create_database,
    create_vhost,
    drop_database,
    free_port,
    port_open,
    rabbitmq_available,
    rabbitmqctl,
    require,
)


def pytest_configure(config):
    """The environment of the whole run, set once before any test (never at import)."""
    # A private TMPDIR: MLflow and Streamlit write temporary files that must not collide
    # with other runs on the same machine.
    config.mlsys_tmp = tempfile.mkdtemp(prefix="mlsys-tests-")
    os.environ["TMPDIR"] = config.mlsys_tmp
    tempfile.tempdir = config.mlsys_tmp
    os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
    # The tests run on this machine's development defaults, as `make` does (unset means
    # production); the tests of what production refuses set it themselves.
    os.environ.setdefault("MLSYS_ENVIRONMENT", "development")
    # Argon2 at its production cost takes ~20 ms a hash; 2,848 users per load would dominate
    # the suite. Hashes carry their own parameters, so this changes cost, never correctness.
    os.environ["AUTH_HASH_MEMORY_KIB"] = "1024"
    os.environ["AUTH_HASH_TIME_COST"] = "1"
    # Consumers wait 1 s, 2 s, ... between deliveries of a failing message; the tests keep
    # the mechanism and shorten the wait.
    # A poison message is dead-lettered after 3 deliveries instead of 12; the tests of an
    # outage set their own.
    os.environ["RABBITMQ_RETRY_BASE_SECONDS"] = "0.05"
    os.environ["RABBITMQ_MAX_ATTEMPTS"] = "3"


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "mlsys_tmp", ""), ignore_errors=True)


@pytest.fixture(autouse=True)
def local_home(tmp_path, monkeypatch) -> Path:
    """Every test gets its own embedded (local profile) state."""
    home = tmp_path / "mlsys-home"
    monkeypatch.setenv("MLSYS_PROFILE", "local")
    monkeypatch.setenv("MLSYS_HOME", str(home))
    # Set, then deleted: undone at teardown to its state before the test, even when MLflow
    # exported the variable during the test (set_tracking_uri does).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    return home


# --- PostgreSQL ---------------------------------------------------------------------


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
    """A real MLflow tracking server with its own PostgreSQL databases (tracking, users) and
    its basic-auth app, as in compose/k8s; clients log in with MLFLOW_ADMIN."""
    database, users = create_database("mlflow_test"), create_database("mlflow_auth_test")
    artifacts = tmp_path_factory.mktemp("mlflow-artifacts")
    port = free_port()
    env = os.environ | {
        "POSTGRES_HOST": PG["host"],
        "POSTGRES_PORT": str(PG["port"]),
        "POSTGRES_USER": PG["user"],
        "POSTGRES_PASSWORD": "",
        "MLFLOW_DB": database,
        "MLFLOW_AUTH_DB": users,
        "MLFLOW_AUTH_ADMIN_USERNAME": MLFLOW_ADMIN["MLFLOW_TRACKING_USERNAME"],
        "MLFLOW_AUTH_ADMIN_PASSWORD": MLFLOW_ADMIN["MLFLOW_TRACKING_PASSWORD"],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "tests-only-csrf-key",
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
        try:
            wait_for_url(f"{uri}/health", timeout=120, process=server)
        except AssertionError as error:
            log.flush()
            log_text = (artifacts.parent / "mlflow-server.log").read_text()[-3000:]
            raise RuntimeError(f"{error}\n{log_text}") from error
        yield uri
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()
        drop_database(database)
        drop_database(users)


# --- one trained demo state -----------------------------------------------------------


@pytest.fixture(scope="session")
def demo_home(tmp_path_factory) -> Path:
    """The demo's jobs run once (local profile) and shared by the slow tests, read-only."""
    home = tmp_path_factory.mktemp("demo") / "mlsys-home"
    env = local_env(home)
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
    run_cli("mlsys.monitoring", "drift", "forecaster", env=env)
    return home


# --- AIAnimals: a small generated dataset, loaded once and copied per test -----------------


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
    env = local_env(home)
    run_cli("mlsys.batch", "initial-load", "--generated", str(aianimals_generated), env=env)
    run_cli("mlsys.batch", "search-index", "--idle-seconds", "0.5", env=env)
    return home


@pytest.fixture(scope="session")
def ranked_home(aianimals_loaded, aianimals_generated, tmp_path_factory):
    """The loaded home with its online features computed and a champion ranker trained."""
    home = tmp_path_factory.mktemp("ranked") / "mlsys-home"
    shutil.copytree(aianimals_loaded, home)
    env = local_env(home)
    run_cli("mlsys.search", "features", env=env)
    run_cli("mlsys.search", "train-ranker", "--hidden-quality",
            str(aianimals_generated / "hidden_quality.csv"), env=env)  # fmt: skip
    return home


@pytest.fixture
def aianimals_home(aianimals_loaded, local_home) -> Path:
    """A private copy of the loaded home: tests may like, post and unlike freely."""
    shutil.copytree(aianimals_loaded, local_home)
    return local_home


@pytest.fixture
def api(aianimals_home):
    """The API (local profile) over a private copy of the loaded AIAnimals home."""
    with serving_api() as (client, _):
        yield client


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


@pytest.fixture
def rabbitmq_vhost(monkeypatch):
    require(rabbitmq_available(), "RabbitMQ on localhost:5672 (with rabbitmqctl)")
    vhost = create_vhost()
    monkeypatch.setenv("RABBITMQ_VHOST", vhost)
    yield vhost
    rabbitmqctl("delete_vhost", vhost)


# --- the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, shared by a module's browser tests. Not longer: while
    Playwright's sync API is open, an event loop runs in this thread, and a later test's
    asyncio.run() would fail ("cannot be called from a running event loop")."""
    with chromium() as browser:
        yield browser
