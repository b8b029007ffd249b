"""Tables of the platform. Every table has a natural key; schema changes go through Alembic."""

from mlsys.common.tables.aianimals import (
    AccessLog,
    Animal,
    AnimalCategory,
    AnimalSubcategory,
    ConsumerOffset,
    DeadLetter,
    Like,
    OutboxMessage,
    User,
    ViolationType,
)
from mlsys.common.tables.base import Base
from mlsys.common.tables.beverage import (
    BacktestPrediction,
    Item,
    ItemPrice,
    ItemSale,
    Region,
    Store,
    WeeklySalesPrediction,
)

__all__ = [
    "AccessLog",
    "Animal",
    "AnimalCategory",
    "AnimalSubcategory",
    "BacktestPrediction",
    "Base",
    "ConsumerOffset",
    "DeadLetter",
    "Item",
    "ItemPrice",
    "ItemSale",
    "Like",
    "OutboxMessage",
    "Region",
    "Store",
    "User",
    "ViolationType",
    "WeeklySalesPrediction",
]
