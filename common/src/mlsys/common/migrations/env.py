"""Alembic environment: runs on the connection handed over by mlsys.common.migrate."""

from alembic import context

attributes = context.config.attributes
connection = attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=attributes["metadata"],
    version_table=attributes["version_table"],
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
)
with context.begin_transaction():
    context.run_migrations()
