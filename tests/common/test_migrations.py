"""Each product's migrations run on SQLite and PostgreSQL, create that product's tables and
nothing else, match its table models exactly, and adopt a database of the former shared
chain (0001 beverage -> 0002 aianimals, recorded in `alembic_version`)."""

import warnings

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect, text

from mlsys.aianimals.database import SCHEMA as AIANIMALS
from mlsys.beverage.database import SCHEMA as BEVERAGE
from mlsys.common import migrate
from mlsys.common.settings import database_url

SCHEMAS = [BEVERAGE, AIANIMALS]
SHARED_CHAIN = [(BEVERAGE, "0001"), (AIANIMALS, "0002")]  # what the former chain applied
HEADS = [(BEVERAGE, "0002"), (AIANIMALS, "0014")]


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def check_round_trip(schema: migrate.Schema, engine: Engine) -> None:
    own = set(schema.metadata.tables)
    migrate.upgrade(schema, engine)
    migrate.upgrade(schema, engine)  # idempotent
    assert tables(engine) == own | {schema.version_table}  # its own tables, nothing else
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"version_table": schema.version_table}
        )
        if engine.dialect.name == "sqlite":
            # SQLite's reflection cannot read expression indexes (lower(handle_name)), so
            # alembic skips them there, with warnings. PostgreSQL compares them in full.
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", ".*expression-based index")
                diff = compare_metadata(context, schema.metadata)
        else:
            diff = compare_metadata(context, schema.metadata)
    assert diff == [], f"{schema.name}: tables.py and the migrations disagree: {diff}"
    migrate.downgrade(schema, engine)
    assert not own & tables(engine)
    migrate.upgrade(schema, engine)
    assert tables(engine) >= own


def make_shared_chain_database(engine: Engine) -> None:
    """What the former single chain left: both products' tables, `alembic_version` = 0002."""
    for schema, revision in SHARED_CHAIN:  # the same scripts 0001 and 0002 as that chain ran
        migrate.upgrade(schema, engine, revision)
    with engine.begin() as connection:
        for schema in SCHEMAS:
            connection.execute(text(f"DROP TABLE {schema.version_table}"))
        connection.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
        connection.execute(text("INSERT INTO alembic_version VALUES ('0002')"))
        connection.execute(text("INSERT INTO regions (id, name) VALUES ('r1', 'north')"))
        connection.execute(text("INSERT INTO violation_types (id, name) VALUES ('v1', 'none')"))


def check_shared_chain_upgrades(engine: Engine) -> None:
    make_shared_chain_database(engine)
    for schema in SCHEMAS:
        migrate.upgrade(schema, engine)
        migrate.upgrade(schema, engine)
    with engine.connect() as connection:
        for schema, revision in HEADS:  # adopted, then upgraded past the shared chain
            versions = connection.execute(text(f"SELECT version_num FROM {schema.version_table}"))
            assert versions.scalars().all() == [revision]
        assert connection.execute(text("SELECT name FROM regions")).scalar() == "north"
        kept = connection.execute(text("SELECT name FROM violation_types WHERE id = 'v1'"))
        assert kept.scalar() == "none"
    migrate.downgrade(BEVERAGE, engine)  # the adopted chain is a real one
    assert "regions" not in tables(engine) and "violation_types" in tables(engine)


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.name)
def test_migrations_on_sqlite(schema, local_home):
    url = database_url(schema.name)
    assert url == f"sqlite:///{(local_home / f'{schema.name}.db').resolve()}"
    check_round_trip(schema, create_engine(url))


def test_a_shared_chain_database_upgrades_on_sqlite(tmp_path):
    check_shared_chain_upgrades(create_engine(f"sqlite:///{tmp_path / 'mlsys.db'}"))


@pytest.fixture
def postgres_engine(services_profile):
    url = database_url("ignored: POSTGRES_DB names the test database")
    assert url.startswith("postgresql+psycopg://") and url.endswith(services_profile)
    engine = create_engine(url)
    yield engine
    engine.dispose()


@pytest.mark.integration
@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.name)
def test_migrations_on_postgresql(schema, postgres_engine):
    check_round_trip(schema, postgres_engine)


@pytest.mark.integration
def test_a_shared_chain_database_upgrades_on_postgresql(postgres_engine):
    check_shared_chain_upgrades(postgres_engine)
