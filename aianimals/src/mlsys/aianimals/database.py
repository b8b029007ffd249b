"""The AIAnimals database: its schema (tables + migrations) and its engine."""

from pathlib import Path

from sqlalchemy import Engine

from mlsys.aianimals.tables import Base
from mlsys.common import db, migrate

SCHEMA = migrate.Schema(
    name="aianimals",
    versions=Path(__file__).parent / "migrations",
    metadata=Base.metadata,
    adopts={"0002": "0002"},  # the former shared chain's second revision was ours
)


def get_engine() -> Engine:
    return db.get_engine(SCHEMA.name)


def upgrade(engine: Engine | None = None) -> None:
    """Create or migrate the AIAnimals tables (idempotent)."""
    migrate.upgrade(SCHEMA, engine or get_engine())
