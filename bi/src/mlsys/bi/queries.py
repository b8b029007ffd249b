"""Read-only queries of the BI. Aggregation happens in SQL where the data is large."""

import pandas as pd
from sqlalchemy import Engine, String, cast, func, literal, select

from mlsys.beverage.tables import (
    BacktestPrediction,
    DriftResult,
    Item,
    ItemSale,
    Region,
    Store,
    WeeklySalesPrediction,
)
from mlsys.beverage.tracking import Forecaster, backtest_metric
from mlsys.common.tracking import run_of

DIMENSIONS = {"region": Region.name, "store": Store.name, "item": Item.name}


def master(engine: Engine) -> pd.DataFrame:
    query = select(Region.name.label("region"), Store.name.label("store")).join(
        Region, Region.id == Store.region_id
    )
    with engine.connect() as connection:
        stores = pd.read_sql(query, connection)
        items = pd.read_sql(select(Item.name.label("item")), connection)
    return stores.merge(items, how="cross")


def daily_sales(
    engine: Engine, *, by: str, regions: list[str], stores: list[str], items: list[str]
) -> pd.DataFrame:
    """Daily sales summed per `by` (region, store or item) over the selection."""
    dimension = DIMENSIONS[by].label(by)
    query = (
        select(
            ItemSale.date,
            dimension,
            func.sum(ItemSale.sales).label("sales"),
            func.sum(ItemSale.total_sales_amount).label("amount"),
        )
        .join(Store, Store.id == ItemSale.store_id)
        .join(Item, Item.id == ItemSale.item_id)
        .join(Region, Region.id == Store.region_id)
        .where(ItemSale.is_generated.is_(False))
        .group_by(ItemSale.date, dimension)
        .order_by(ItemSale.date)
    )
    for column, chosen in ((Region.name, regions), (Store.name, stores), (Item.name, items)):
        if chosen:
            query = query.where(column.in_(chosen))
    with engine.connect() as connection:
        frame = pd.read_sql(query, connection)
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def period_start(dates: pd.Series, period: str) -> pd.Series:
    if period == "daily":
        return dates
    if period == "weekly":  # ISO weeks, labelled by their Monday
        return dates - pd.to_timedelta(dates.dt.day_of_week, unit="D")
    return dates.dt.to_period("M").dt.start_time


def resample(frame: pd.DataFrame, by: str, period: str) -> pd.DataFrame:
    """Daily rows to daily, weekly or monthly totals per `by`."""
    keyed = frame.assign(date=period_start(frame["date"], period))
    return keyed.groupby(["date", by], as_index=False)[["sales", "amount"]].sum()


def _forecasts(connection, table, source) -> pd.DataFrame:
    query = (
        select(
            source.label("source"),
            table.week_start,
            Store.name.label("store"),
            Item.name.label("item"),
            Region.name.label("region"),
            table.prediction,
        )
        .join(Store, Store.id == table.store_id)
        .join(Item, Item.id == table.item_id)
        .join(Region, Region.id == Store.region_id)
    )
    return pd.read_sql(query, connection)


def predictions_vs_actuals(engine: Engine) -> pd.DataFrame:
    """Every stored forecast next to the actual weekly sales (NaN while a week is open).

    `source` is "version N" for the weekly forecasts of a registered model, and
    "backtest <run>" for the out-of-sample forecasts of a backtest.
    """
    model_source = literal("version ") + cast(WeeklySalesPrediction.model_version, String)
    backtest_source = literal("backtest ") + func.substr(BacktestPrediction.run_id, 1, 8)
    with engine.connect() as connection:
        forecasts = pd.concat(
            [
                _forecasts(connection, WeeklySalesPrediction, model_source),
                _forecasts(connection, BacktestPrediction, backtest_source),
            ],
            ignore_index=True,
        )
        if forecasts.empty:
            return forecasts
        first, last = forecasts["week_start"].min(), forecasts["week_start"].max()
        actual_query = (
            select(
                ItemSale.date, Store.name.label("store"), Item.name.label("item"), ItemSale.sales
            )
            .join(Store, Store.id == ItemSale.store_id)
            .join(Item, Item.id == ItemSale.item_id)
            .where(ItemSale.date >= first, ItemSale.date < last + pd.Timedelta(days=7))
            .where(ItemSale.is_generated.is_(False))
        )
        daily = pd.read_sql(actual_query, connection)
    forecasts["week_start"] = pd.to_datetime(forecasts["week_start"])
    daily["date"] = pd.to_datetime(daily["date"])
    daily["week_start"] = period_start(daily["date"], "weekly")
    weekly = daily.groupby(["week_start", "store", "item"]).agg(
        actual=("sales", "sum"), days=("sales", "size")
    )
    merged = forecasts.join(weekly, on=["week_start", "store", "item"])
    merged.loc[merged["days"] != 7, "actual"] = float("nan")  # a week is judged once complete
    merged["error"] = merged["prediction"] - merged["actual"]
    merged["abs_pct_error"] = (merged["error"].abs() / merged["actual"]).where(merged["actual"] > 0)
    return merged.drop(columns="days")


def model_history(tracking_uri: str, model_name: str) -> pd.DataFrame:
    """Registered versions with aliases and backtest metrics, newest first."""
    from mlflow.exceptions import MlflowException

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        aliases = client.get_registered_model(model_name).aliases  # {alias: version}
    except MlflowException:  # nothing registered yet
        return pd.DataFrame()
    rows = []
    # search results leave `aliases` empty, so they come from the registered model above
    for version in client.search_model_versions(f"name = '{model_name}'"):
        run = client.get_run(run_of(version))
        metrics = run.data.metrics
        rows.append(
            {
                "version": int(version.version),
                "aliases": ", ".join(
                    a for a, v in aliases.items() if str(v) == str(version.version)
                ),
                "created": pd.to_datetime(version.creation_timestamp, unit="ms"),
                **{
                    f"{forecaster}_wape": metrics.get(backtest_metric(forecaster, "wape"))
                    for forecaster in Forecaster
                },
                "model_mae": metrics.get(backtest_metric(Forecaster.model, "mae")),
                "evaluation_weeks": run.data.tags.get("evaluation_weeks"),
                "data_fingerprint": run.data.tags.get("data_fingerprint"),
                "run_id": version.run_id,
            }
        )
    frame = pd.DataFrame(rows)
    return frame.sort_values("version", ascending=False) if not frame.empty else frame


def drift_results(engine: Engine) -> pd.DataFrame:
    """Every drift check's measures (drift_results), oldest week first."""
    with engine.connect() as connection:
        frame = pd.read_sql(
            select(DriftResult).order_by(DriftResult.week_start, DriftResult.measure), connection
        )
    frame["week_start"] = pd.to_datetime(frame["week_start"])
    return frame
