"""The backing services on localhost: reachability, and the per-test database and vhost.

With CI=true a missing service fails the test; elsewhere it is skipped with the reason.
"""

import os
import shutil
import socket
import subprocess
import uuid

import psycopg
import pytest

CI = os.environ.get("CI", "").lower() == "true"
PG = {"host": os.environ.get("POSTGRES_HOST", "127.0.0.1"), "port": 5432, "user": "postgres"}
# The admin of the tests' MLflow server (its basic-auth app wants 12 characters or more).
MLFLOW_ADMIN = {
    "MLFLOW_TRACKING_USERNAME": "admin",
    "MLFLOW_TRACKING_PASSWORD": "tests-only-admin-password",
}


def require(reachable: bool, what: str) -> None:
    if reachable:
        return
    if CI:
        pytest.fail(f"{what} is required in CI (CI=true) but is not available")
    pytest.skip(f"{what} is not available (`make services` starts it)")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _admin() -> psycopg.Connection:
    return psycopg.connect(dbname="postgres", autocommit=True, **PG)


def create_database(prefix: str) -> str:
    require(port_open(PG["host"], PG["port"]), "PostgreSQL on localhost:5432")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with _admin() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    """Drop the database and the roles made for it (`<name>_...`)."""
    with _admin() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        roles = connection.execute(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (f"{name}_",)
        ).fetchall()
        for (role,) in roles:
            connection.execute(f'DROP ROLE "{role}"')


def create_roles(database: str, components: list[str]) -> dict[str, str]:
    """What a deployment's PostgreSQL bootstrap makes: the owner role of `database`
    (`<database>_owner`) and a login role per component; component -> role. The local
    server trusts localhost, so the roles need no password here."""
    roles = {name: f"{database}_{name}" for name in ["owner", *components]}
    with _admin() as connection:
        for role in roles.values():
            connection.execute(f'CREATE ROLE "{role}" LOGIN')
        connection.execute(f'ALTER DATABASE "{database}" OWNER TO "{roles["owner"]}"')
    return roles


def rabbitmq_available() -> bool:
    return port_open("127.0.0.1", 5672) and shutil.which("rabbitmqctl") is not None


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def create_vhost() -> str:
    vhost = f"mlsys-test-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return vhost
