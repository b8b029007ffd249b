"""What every product's tables share: one constraint naming convention, UTC timestamps.

Each product declares its own `Base` (and so its own MetaData) on `product_metadata()`,
so that its migrations create its tables only, in its own database.
"""

from datetime import UTC, datetime

from sqlalchemy import DateTime, MetaData
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def product_metadata() -> MetaData:
    """A MetaData with the platform's naming convention, for one product's `Base`."""
    return MetaData(naming_convention=NAMING)


class UtcDateTime(TypeDecorator):
    """A timestamp that is always read back time-zone aware, in UTC.

    PostgreSQL keeps the zone (timestamptz); SQLite keeps none, so its values are stored
    as naive UTC and given their zone back when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is not None and value.tzinfo is not None and dialect.name == "sqlite":
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value
