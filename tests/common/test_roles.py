"""One PostgreSQL role per component with only the privileges it needs; migrations run as
the database's owner (issue 10, item 9). That the privileges suffice is shown by
test_api_services, which runs the whole AIAnimals flow as these roles."""

import psycopg
import pytest
from sqlalchemy import create_engine

from mlsys.aianimals.database import SCHEMA as AIANIMALS
from mlsys.beverage.database import SCHEMA as BEVERAGE
from mlsys.common import migrate
from tests.helpers.cli import run_cli
from tests.helpers.services import PG, create_database, create_roles, drop_database

pytestmark = pytest.mark.integration


@pytest.fixture
def database():
    name = create_database("mlsys_roles")
    yield name
    drop_database(name)


def connect(database: str, role: str) -> psycopg.Connection:
    return psycopg.connect(
        dbname=database, host=PG["host"], port=PG["port"], user=role, autocommit=True
    )


def denied(connection: psycopg.Connection, statement: str) -> bool:
    try:
        connection.execute(statement)
    except psycopg.errors.InsufficientPrivilege:
        return True
    return False


def as_role(monkeypatch, database: str, role: str) -> None:
    monkeypatch.setenv("MLSYS_PROFILE", "services")
    monkeypatch.setenv("POSTGRES_HOST", PG["host"])
    monkeypatch.setenv("POSTGRES_DB", database)
    monkeypatch.setenv("POSTGRES_USER", role)


def test_each_aianimals_component_may_do_its_work_and_nothing_else(database, monkeypatch):
    roles = create_roles(database, ["api", "batch"])
    as_role(monkeypatch, database, roles["owner"])
    assert "aianimals: at head" in run_cli("mlsys.batch", "migrate").stdout
    with connect(database, roles["api"]) as api:
        api.execute("SELECT id, token_version FROM users")
        api.execute("SELECT count(*) FROM likes")
        assert denied(api, "SELECT * FROM access_logs")  # it writes them, never reads
        assert denied(api, "DELETE FROM users")
        assert denied(api, "DELETE FROM animals")
        assert denied(api, "UPDATE outbox SET published_at = now()")
        assert denied(api, "CREATE TABLE mine (id int)")
        assert denied(api, "DROP TABLE users")
        assert denied(api, "ALTER TABLE users ADD COLUMN x int")
    with connect(database, roles["batch"]) as batch:
        batch.execute("SELECT id FROM outbox FOR UPDATE SKIP LOCKED")
        assert denied(batch, "DELETE FROM users")
        assert denied(batch, "TRUNCATE likes")
        assert denied(batch, "CREATE TABLE mine (id int)")


def test_a_role_that_may_not_migrate_starts_at_head_and_fails_clearly_behind_it(
    database, monkeypatch
):
    roles = create_roles(database, ["api", "batch"])
    url = f"postgresql+psycopg://{{}}@{PG['host']}:{PG['port']}/{database}"
    owner, api = create_engine(url.format(roles["owner"])), create_engine(url.format(roles["api"]))
    migrate.upgrade(AIANIMALS, owner)
    migrate.upgrade(AIANIMALS, api)  # at head: what every component does at start
    migrate.downgrade(AIANIMALS, owner, "0004")
    with pytest.raises(PermissionError, match="run the `migrate` command as the database's owner"):
        migrate.upgrade(AIANIMALS, api)
    owner.dispose()
    api.dispose()


def test_a_component_started_before_the_migration_waits_for_it_then_starts(database, monkeypatch):
    """Issue 11, item 8: workers started before the migrate Job crash-looped (and the
    initial load raced the index consumer to migrate the empty database)."""
    import subprocess
    import sys

    roles = create_roles(database, ["api", "batch"])
    url = f"postgresql+psycopg://{roles['batch']}@{PG['host']}:{PG['port']}/{database}"
    batch = create_engine(url)
    with pytest.raises(PermissionError):  # nobody migrates: it gives up, saying why
        migrate.upgrade_or_wait(AIANIMALS, batch, timeout=0.5, poll=0.1)
    as_role(monkeypatch, database, roles["owner"])
    job = subprocess.Popen(  # the migrate Job, in its own process, started after the worker
        [sys.executable, "-m", "mlsys.batch", "migrate"], stdout=subprocess.PIPE, text=True
    )
    migrate.upgrade_or_wait(AIANIMALS, batch, timeout=120, poll=0.1)
    printed, _ = job.communicate(timeout=60)
    assert job.returncode == 0 and "at head" in printed
    assert migrate.at_head(AIANIMALS, batch)
    batch.dispose()


def test_every_upgrade_grants_exactly_what_the_schema_lists(database):
    roles = create_roles(database, ["data_registration", "ml", "bi"])
    owner = create_engine(f"postgresql+psycopg://{roles['owner']}@{PG['host']}/{database}")
    migrate.upgrade(BEVERAGE, owner)
    with connect(database, roles["bi"]) as bi:
        bi.execute("SELECT * FROM weekly_sales_predictions")
        assert denied(bi, "INSERT INTO regions (id, name) VALUES ('r', 'r')")
    with connect(database, roles["owner"]) as connection:
        connection.execute(f'GRANT DELETE, INSERT ON regions TO "{roles["bi"]}"')  # by hand
    migrate.upgrade(BEVERAGE, owner)  # the next migration puts it right
    with connect(database, roles["bi"]) as bi:
        assert denied(bi, "INSERT INTO regions (id, name) VALUES ('r', 'r')")
    with connect(database, roles["ml"]) as ml:
        assert denied(ml, "UPDATE item_sales SET sales = 0")
        ml.execute("SELECT count(*) FROM backtest_predictions")
    owner.dispose()


def test_privileges_name_real_tables_and_privileges():
    for schema in (AIANIMALS, BEVERAGE):
        for component, tables in schema.privileges.items():
            assert set(tables) <= set(schema.metadata.tables), (schema.name, component)
            for privileges in tables.values():
                assert {p.strip() for p in privileges.split(",")} <= migrate.PRIVILEGES
