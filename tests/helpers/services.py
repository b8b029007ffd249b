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
    with _admin() as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def rabbitmq_available() -> bool:
    return port_open("127.0.0.1", 5672) and shutil.which("rabbitmqctl") is not None


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=120)


def create_vhost() -> str:
    vhost = f"mlsys-test-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return vhost
