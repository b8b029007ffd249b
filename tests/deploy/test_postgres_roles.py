"""The PostgreSQL bootstrap of compose and Kubernetes (data/create-roles.sh, with the
passwords `make secrets` writes) on a throwaway PostgreSQL cluster with password
authentication: the owner roles migrate, each component logs in with its own password
and reaches only its own database (issue 10, item 9)."""

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

from mlsys.aianimals.database import SCHEMA as AIANIMALS
from mlsys.beverage.database import SCHEMA as BEVERAGE
from mlsys.common.migrate import role_of
from tests.helpers.cli import run_cli
from tests.helpers.paths import ROOT
from tests.helpers.services import free_port, require

pytestmark = pytest.mark.integration

SCRIPT = ROOT / "infrastructure/manifests/data/create-roles.sh"
BIN = Path("/usr/lib/postgresql/15/bin")


def env_file(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def as_postgres(command: list[str]) -> list[str]:
    # initdb and the server refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require((BIN / "initdb").is_file(), "PostgreSQL 15's binaries")
    manifests = tmp_path_factory.mktemp("secrets") / "manifests"
    shutil.copytree(ROOT / "infrastructure/manifests", manifests,
                    ignore=shutil.ignore_patterns("secrets"))  # fmt: skip
    subprocess.run(
        ["bash", str(ROOT / "infrastructure/scripts/make_secrets.sh"), str(manifests),
         str(manifests / "env.secret")],
        check=True, capture_output=True,
    )  # fmt: skip
    server = env_file(manifests / "data/secrets/postgres.env")
    # Not under the tests' private TMPDIR: the server's user must reach it (and the socket
    # path must stay short).
    directory = Path(tempfile.mkdtemp(prefix="mlsys-pg-", dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    password_file = directory / "superuser"
    password_file.write_text(server["POSTGRES_SUPERUSER_PASSWORD"])
    if os.geteuid() == 0:
        shutil.chown(password_file, "postgres", "postgres")
    data, port = directory / "data", free_port()
    subprocess.run(
        as_postgres([str(BIN / "initdb"), "-D", str(data), "-U", "postgres",
                     f"--pwfile={password_file}", "--auth-local=trust",
                     "--auth-host=scram-sha-256"]),
        check=True, capture_output=True,
    )  # fmt: skip
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1"
    subprocess.run(
        as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-w", "start",
                     "-l", str(directory / "log")]),
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield {"port": port, "socket": directory, "manifests": manifests, "server": server}
    finally:
        subprocess.run(as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]))
        shutil.rmtree(directory, ignore_errors=True)


def bootstrap(cluster) -> subprocess.CompletedProcess:
    """What docker-entrypoint-initdb.d does: the script, as the superuser, on the socket."""
    env = os.environ | cluster["server"] | {"PGHOST": str(cluster["socket"]),
                                            "PGPORT": str(cluster["port"])}  # fmt: skip
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)


def login(cluster, database: str, secret: str) -> psycopg.Connection:
    """A connection over TCP (password checked) as the role of a component's secret."""
    credentials = env_file(cluster["manifests"] / secret)
    return psycopg.connect(
        host="127.0.0.1", port=cluster["port"], dbname=database, autocommit=True,
        user=credentials["POSTGRES_USER"], password=credentials["POSTGRES_PASSWORD"],
    )  # fmt: skip


def test_the_bootstrap_makes_every_role_the_schemas_grant_to():
    script = SCRIPT.read_text()
    listed = set()
    for schema in (BEVERAGE, AIANIMALS):
        components = re.search(rf'COMPONENTS_{schema.name}="([^"]*)"', script)
        assert components, schema.name
        assert set(components.group(1).split()) == set(schema.privileges)
        listed |= {role_of(schema.name, c) for c in ["owner", *schema.privileges]}
    secrets = (ROOT / "infrastructure/scripts/make_secrets.sh").read_text()
    roles = re.search(r'roles="([^"]*)"', secrets)
    assert roles and set(roles.group(1).split()) == listed | {"mlflow"}


def test_roles_log_in_with_their_passwords_and_reach_only_their_database(cluster, monkeypatch):
    first = bootstrap(cluster)
    assert first.returncode == 0, first.stderr
    again = bootstrap(cluster)  # idempotent: it may be run again after an upgrade
    assert again.returncode == 0, again.stderr
    owner = env_file(cluster["manifests"] / "aianimals/secrets/postgres-owner.env")
    monkeypatch.setenv("MLSYS_PROFILE", "services")
    monkeypatch.setenv("POSTGRES_HOST", "127.0.0.1")
    monkeypatch.setenv("POSTGRES_PORT", str(cluster["port"]))
    monkeypatch.setenv("POSTGRES_DB", "aianimals")
    for name, value in owner.items():
        monkeypatch.setenv(name, value)
    assert "aianimals: at head" in run_cli("mlsys.batch", "migrate").stdout
    with login(cluster, "aianimals", "aianimals/secrets/postgres-api.env") as api:
        assert api.execute("SELECT count(*) FROM users").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            api.execute("CREATE TABLE mine (id int)")
    with login(cluster, "aianimals", "aianimals/secrets/postgres-batch.env") as batch:
        batch.execute("CREATE TEMPORARY TABLE staged (id int)")  # how bulk upserts stage
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        login(cluster, "aianimals", "beverage-sales-forecasting/secrets/postgres-bi.env")
    with login(cluster, "mlflow", "mlflow/secrets/postgres.env") as mlflow:
        mlflow.execute("CREATE TABLE experiments_probe (id int)")  # MLflow owns its database
    with login(cluster, "mlflow_auth", "mlflow/secrets/postgres.env") as users:
        users.execute("CREATE TABLE users_probe (id int)")  # and its users' one
    wrong = env_file(cluster["manifests"] / "aianimals/secrets/postgres-api.env")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=cluster["port"], dbname="aianimals",
                        user=wrong["POSTGRES_USER"], password="guessed")  # fmt: skip
