"""The forecasting database: its schema (tables + migrations) and its engine."""

from pathlib import Path

from sqlalchemy import Engine

from mlsys.beverage.tables import Base
from mlsys.common import db, migrate

_REGISTERED = ("regions", "stores", "items", "item_prices", "item_sales")
_PREDICTED = ("weekly_sales_predictions", "backtest_predictions", "weekly_forecast_features")
_DRIFT = ("drift_results",)

SCHEMA = migrate.Schema(
    name="beverage",
    versions=Path(__file__).parent / "migrations",
    metadata=Base.metadata,
    adopts={"0001": "0001", "0002": "0001"},  # the former shared chain began with ours
    privileges={
        "data_registration": dict.fromkeys(_REGISTERED, "SELECT, INSERT, UPDATE"),
        # Trains on the registered data; writes the forecasts and the backtests' predictions.
        "ml": {
            **dict.fromkeys(_REGISTERED, "SELECT"),
            **dict.fromkeys(_PREDICTED, "SELECT, INSERT, UPDATE"),
        },
        # Compares the forecasts' inputs with the champion's reference; writes its verdicts.
        "monitoring": {
            **dict.fromkeys((*_REGISTERED, *_PREDICTED), "SELECT"),
            **dict.fromkeys(_DRIFT, "SELECT, INSERT, UPDATE"),
        },
        "bi": dict.fromkeys((*_REGISTERED, *_PREDICTED, *_DRIFT), "SELECT"),
    },
)


def get_engine() -> Engine:
    return db.get_engine(SCHEMA.name)


def upgrade(engine: Engine | None = None) -> None:
    """Create or migrate the forecasting tables (idempotent)."""
    migrate.upgrade(SCHEMA, engine or get_engine())


def upgrade_or_wait(engine: Engine | None = None) -> None:
    """At a component's start: the forecasting tables at head, migrated here where this
    role may, else once the `migrate` command has run (see `migrate.upgrade_or_wait`)."""
    migrate.upgrade_or_wait(SCHEMA, engine or get_engine())
