"""SQLAlchemy engines for the products' databases (one pool per URL per process)."""

from functools import cache

from sqlalchemy import Engine, create_engine, event

from mlsys.common.settings import database_url


@cache
def engine_for(url: str) -> Engine:
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        # Foreign keys are off by default in SQLite; WAL lets the BI read while a job writes.
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

    return engine


def get_engine(database: str) -> Engine:
    """The engine of a product's database (see `database_url`)."""
    return engine_for(database_url(database))
