"""Beverage demand forecasting: master data, daily sales, predictions."""

from datetime import date, datetime

from sqlalchemy import Boolean, Date, DateTime, Float, ForeignKey, Integer, String, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mlsys.common.tables import product_metadata


class Base(DeclarativeBase):
    metadata = product_metadata()


class Region(Base):
    __tablename__ = "regions"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)


class Store(Base):
    __tablename__ = "stores"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    region_id: Mapped[str] = mapped_column(ForeignKey("regions.id"))


class Item(Base):
    __tablename__ = "items"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)


class ItemPrice(Base):
    __tablename__ = "item_prices"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"))
    price: Mapped[int] = mapped_column(Integer)
    applied_from: Mapped[date] = mapped_column(Date)
    applied_to: Mapped[date] = mapped_column(Date)


class ItemSale(Base):
    """Daily sales of one item in one store; natural key (date, store, item).

    No foreign keys on purpose: per-row constraint triggers made up two thirds of a bulk
    load's time, and the registration job already maps every store and item through the
    master tables inside the same transaction.
    """

    __tablename__ = "item_sales"
    date: Mapped[date] = mapped_column(Date, primary_key=True)
    store_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sales: Mapped[int] = mapped_column(Integer)
    total_sales_amount: Mapped[int] = mapped_column(Integer)
    # Synthetic history is kept apart so that no model learns from it by accident.
    is_generated: Mapped[bool] = mapped_column(Boolean, default=False)


class WeeklySalesPrediction(Base):
    """Forecast of one ISO week's sales; natural key (week, store, item, model version)."""

    __tablename__ = "weekly_sales_predictions"
    week_start: Mapped[date] = mapped_column(Date, primary_key=True)
    store_id: Mapped[str] = mapped_column(ForeignKey("stores.id"), primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_name: Mapped[str] = mapped_column(String(128))
    run_id: Mapped[str] = mapped_column(String(64))
    prediction: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class BacktestPrediction(Base):
    """Out-of-sample forecast of a backtest fold; natural key (run, week, store, item)."""

    __tablename__ = "backtest_predictions"
    run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    week_start: Mapped[date] = mapped_column(Date, primary_key=True)
    store_id: Mapped[str] = mapped_column(ForeignKey("stores.id"), primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"), primary_key=True)
    prediction: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WeeklyForecastFeature(Base):
    """A feature the forecaster read for one forecast: what the drift check compares with
    the model's training reference. Long (one row a feature) so that a feature added to the
    model needs no migration; natural key (week, store, item, model version, feature)."""

    __tablename__ = "weekly_forecast_features"
    week_start: Mapped[date] = mapped_column(Date, primary_key=True)
    store_id: Mapped[str] = mapped_column(ForeignKey("stores.id"), primary_key=True)
    item_id: Mapped[str] = mapped_column(ForeignKey("items.id"), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    feature: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[float | None] = mapped_column(Float)


# The measures of a drift check besides its columns' (written by the monitoring job, read
# by the BI): the share of drifted columns, and the realised error once actuals came.
DATASET_MEASURE = "dataset"
REALISED_WAPE_MEASURE = "realised_wape"


class DriftResult(Base):
    """One measure of a drift check of a model version's forecasts for a week: a column's
    test, the dataset's share of drifted columns, or the realised error once actuals came.
    Natural key (model, version, week, measure): checking a week again replaces it."""

    __tablename__ = "drift_results"
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    week_start: Mapped[date] = mapped_column(Date, primary_key=True)
    measure: Mapped[str] = mapped_column(String(64), primary_key=True)
    method: Mapped[str] = mapped_column(String(32))  # ks, chi2, wasserstein, share, wape, ...
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    drifted: Mapped[bool] = mapped_column(Boolean)
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
