"""Alembic migrations, run programmatically so every job and test uses one code path.

Each product owns a `Schema`: its tables, its chain of migrations and its version table,
so that migrating a product's database creates that product's tables and nothing else.

On PostgreSQL the schema also says what each component may do: the component connects as
the role `<database>_<component>` and gets exactly those privileges, granted after every
upgrade by the role that migrates (the database's owner, `<database>_owner`). No
component owns a table or may create, alter or drop one.
"""

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, MetaData, inspect, text
from sqlalchemy.exc import ProgrammingError

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
    # Component -> table -> what its role may do there, e.g. {"bi": {"stores": "SELECT"}}.
    privileges: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

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


PRIVILEGES = {"SELECT", "INSERT", "UPDATE", "DELETE"}


def role_of(database: str, component: str) -> str:
    """The PostgreSQL role a component connects to `database` as."""
    return f"{database}_{component}"


def upgrade(schema: Schema, engine: Engine, revision: str = "head") -> None:
    """Bring `schema` in the database of `engine` to `revision` (idempotent); on
    PostgreSQL, then grant each component's role its privileges.

    At head it changes nothing, so a component's role (which may not create tables)
    passes; behind head it fails saying who must migrate. Components call
    `upgrade_or_wait`, which waits for that instead."""
    try:
        with engine.begin() as connection:
            config = _config(schema, connection)
            _adopt_shared_chain(schema, connection, config)
            command.upgrade(config, revision)
            if connection.dialect.name == "postgresql" and _owns_schema(connection):
                grant(schema, connection)
    except ProgrammingError as error:
        if getattr(error.orig, "sqlstate", None) != "42501":  # insufficient_privilege
            raise
        raise PermissionError(
            f"{schema.name}: the database is behind the code's migrations and this role "
            f"({engine.url.username}) may not migrate it: run the `migrate` command as "
            f"the database's owner role first ({error.orig})"
        ) from error


def upgrade_or_wait(
    schema: Schema, engine: Engine, timeout: float = 600.0, poll: float = 2.0
) -> None:
    """What a component runs at start: migrate where its role may (SQLite, a development
    database), otherwise wait until the `migrate` Job has brought the schema to head.

    So the order between the migration and the workloads holds by construction, not by
    luck: a worker started first waits (saying why) instead of crash-looping; after
    `timeout` seconds it fails with upgrade's message."""
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        try:
            upgrade(schema, engine)
        except PermissionError:
            if time.monotonic() >= deadline:
                raise
            if not waited:
                log.warning(
                    "schema=%s is behind this version; waiting up to %.0fs for its `migrate` "
                    "command (the database's owner) to run",
                    schema.name,
                    timeout,
                )
                waited = True
            time.sleep(poll)
        else:
            if waited:
                log.info("schema=%s at head: starting", schema.name)
            return


def _owns_schema(connection: Connection) -> bool:
    """Whether the current role may grant on the schema's tables (owner or superuser)."""
    return bool(
        connection.scalar(
            text(
                "SELECT rolsuper OR pg_has_role(current_user, (SELECT datdba FROM pg_database "
                "WHERE datname = current_database()), 'MEMBER') FROM pg_roles "
                "WHERE rolname = current_user"
            )
        )
    )


def grant(schema: Schema, connection: Connection) -> list[str]:
    """Give each component's role, where it exists, exactly the privileges the schema
    lists (revoking any others on the schema's tables); returns the roles granted to."""
    quote = connection.dialect.identifier_preparer.quote
    database = connection.scalar(text("SELECT current_database()"))
    roles = set(connection.scalars(text("SELECT rolname FROM pg_roles")))
    granted = []
    for component, tables in schema.privileges.items():
        role = role_of(database, component)
        if role not in roles:
            continue  # a deployment that runs every component as one role
        who = quote(role)
        for table in [*schema.metadata.tables, schema.version_table]:
            connection.execute(text(f"REVOKE ALL ON {quote(table)} FROM {who}"))
        # TEMPORARY: bulk upserts stage rows in temporary tables (mlsys.common.bulk).
        connection.execute(text(f"GRANT CONNECT, TEMPORARY ON DATABASE {quote(database)} TO {who}"))
        connection.execute(text(f"GRANT USAGE ON SCHEMA public TO {who}"))
        connection.execute(text(f"GRANT SELECT ON {quote(schema.version_table)} TO {who}"))
        for table, privileges in tables.items():
            words = {word.strip() for word in privileges.split(",")}
            if table not in schema.metadata.tables or not words <= PRIVILEGES:
                raise ValueError(f"{schema.name}.{component}: bad privilege {table}={privileges}")
            connection.execute(text(f"GRANT {', '.join(sorted(words))} ON {quote(table)} TO {who}"))
        if any("INSERT" in privileges for privileges in tables.values()):
            # Auto-incremented ids draw from sequences.
            connection.execute(text(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {who}"))
        granted.append(role)
    if granted:
        log.info("schema=%s privileges granted to %s", schema.name, ",".join(granted))
    return granted


def at_head(schema: Schema, engine: Engine) -> bool:
    """Whether the database holds the schema at the code's latest revision (readiness:
    a component of a newer version waits until `migrate` has run)."""
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    with engine.connect() as connection:
        config = _config(schema, connection)
        heads = set(ScriptDirectory.from_config(config).get_heads())
        context = MigrationContext.configure(
            connection, opts={"version_table": schema.version_table}
        )
        return set(context.get_current_heads()) == heads


def downgrade(schema: Schema, engine: Engine, revision: str = "base") -> None:
    with engine.begin() as connection:
        command.downgrade(_config(schema, connection), revision)
