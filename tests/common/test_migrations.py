"""Migrations run on SQLite and PostgreSQL and match the table models exactly."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from mlsys.common import migrate
from mlsys.common.db import get_engine
from mlsys.common.settings import database_url
from mlsys.common.tables import Base

TABLES = {
    "regions",
    "stores",
    "items",
    "item_prices",
    "item_sales",
    "weekly_sales_predictions",
    "backtest_predictions",
}


def check_round_trip(engine) -> None:
    migrate.upgrade(engine)
    migrate.upgrade(engine)  # idempotent
    assert set(inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == [], f"tables.py and the migrations disagree: {diff}"
    migrate.downgrade(engine)
    assert not TABLES & set(inspect(engine).get_table_names())
    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES


def test_migrations_on_sqlite(local_home):
    assert database_url().startswith("sqlite:///")
    check_round_trip(get_engine())


@pytest.mark.integration
def test_migrations_on_postgresql(services_profile):
    url = database_url()
    assert url.startswith("postgresql+psycopg://") and url.endswith(services_profile)
    engine = create_engine(url)
    try:
        check_round_trip(engine)
    finally:
        engine.dispose()
