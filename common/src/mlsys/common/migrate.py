"""Alembic migrations, run programmatically so every job and test uses one code path.

Each product owns a `Schema`: its tables, its chain of migrations and its version table,
so that migrating a product's database creates that product's tables and nothing else.
"""

from dataclasses import dataclass, field
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, MetaData, inspect, text

from mlsys.common.logging import get_logger

log = get_logger(__name__)

ENVIRONMENT = Path(__file__).parent / "migrations"  # env.py and the revision template
# Until each product had its own chain, one chain (0001 beverage -> 0002 aianimals) ran in
# every database and recorded its head here.
SHARED_CHAIN_TABLE = "alembic_version"


@dataclass(frozen=True)
class Schema:
    """One product's tables and migrations."""

    name: str
    versions: Path  # the product's Alembic revisions
    metadata: MetaData
    # Revision of the former shared chain -> the revision of this chain it implies.
    adopts: dict[str, str] = field(default_factory=dict)

    @property
    def version_table(self) -> str:
        return f"alembic_version_{self.name}"


def _config(schema: Schema, connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(ENVIRONMENT))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", str(schema.versions))
    config.attributes.update(
        connection=connection, metadata=schema.metadata, version_table=schema.version_table
    )
    return config


def _adopt_shared_chain(schema: Schema, connection: Connection, config: Config) -> None:
    """Record a database migrated by the former shared chain at this chain's revision."""
    tables = set(inspect(connection).get_table_names())
    if schema.version_table in tables or SHARED_CHAIN_TABLE not in tables:
        return
    shared = connection.execute(text(f"SELECT version_num FROM {SHARED_CHAIN_TABLE}")).scalars()
    revisions = sorted({schema.adopts[r] for r in shared if r in schema.adopts})
    if not revisions:
        return
    command.stamp(config, revisions)
    foreign = sorted(
        table
        for table in tables - set(schema.metadata.tables)
        if not table.startswith(SHARED_CHAIN_TABLE)  # version tables, the other chain's too
    )
    log.warning(
        "schema=%s adopted from the shared chain at %s; tables of other products are left "
        "as they are: %s",
        schema.name,
        ",".join(revisions),
        ",".join(foreign) or "none",
    )


def upgrade(schema: Schema, engine: Engine, revision: str = "head") -> None:
    """Bring `schema` in the database of `engine` to `revision` (idempotent)."""
    with engine.begin() as connection:
        config = _config(schema, connection)
        _adopt_shared_chain(schema, connection, config)
        command.upgrade(config, revision)


def downgrade(schema: Schema, engine: Engine, revision: str = "base") -> None:
    with engine.begin() as connection:
        command.downgrade(_config(schema, connection), revision)
