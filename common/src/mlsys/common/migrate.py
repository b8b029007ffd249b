"""Alembic migrations, run programmatically so every job and test uses one code path."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from mlsys.common.db import get_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(engine: Engine | None = None, revision: str = "head") -> None:
    """Bring the schema of the configured database to `revision` (idempotent)."""
    config = alembic_config()
    with (engine or get_engine()).begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine | None = None, revision: str = "base") -> None:
    config = alembic_config()
    with (engine or get_engine()).begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
