"""Loading sales history and prices from the database, aggregated in SQL."""

import hashlib

import pandas as pd
from sqlalchemy import Date, Engine, Integer, cast, func, select

from mlsys.beverage.tables import Item, ItemPrice, ItemSale, Region, Store
from mlsys.ml.features import SalesHistory


def week_start_sql(engine: Engine, column):
    """The Monday of a date's ISO week, in the database's own dialect."""
    if engine.dialect.name == "postgresql":
        return cast(func.date_trunc("week", column), Date)
    days_since_monday = (cast(func.strftime("%w", column), Integer) + 6) % 7
    return func.date(column, func.printf("-%d days", days_since_monday))


def load_history(
    engine: Engine, include_generated: bool = False, before: pd.Timestamp | None = None
) -> SalesHistory:
    """Item-day and series-week sums (the database does the heavy lifting)."""
    conditions = [] if include_generated else [ItemSale.is_generated.is_(False)]
    if before is not None:
        conditions.append(ItemSale.date < before.date())
    item_days = (
        select(
            Item.name.label("item"),
            ItemSale.date,
            func.sum(ItemSale.sales).label("sales"),
            func.count().label("n"),
        )
        .join(Item, Item.id == ItemSale.item_id)
        .where(*conditions)
        .group_by(Item.name, ItemSale.date)
    )
    week = week_start_sql(engine, ItemSale.date).label("week_start")
    series_weeks = (
        select(
            Store.name.label("store"),
            Item.name.label("item"),
            Region.name.label("region"),
            week,
            func.sum(ItemSale.sales).label("week_sales"),
            func.count().label("days"),
        )
        .join(Store, Store.id == ItemSale.store_id)
        .join(Item, Item.id == ItemSale.item_id)
        .join(Region, Region.id == Store.region_id)
        .where(*conditions)
        .group_by(Store.name, Item.name, Region.name, week)
    )
    with engine.connect() as connection:
        days = pd.read_sql(item_days, connection)
        weeks = pd.read_sql(series_weeks, connection)
    days["date"] = pd.to_datetime(days["date"])
    weeks["week_start"] = pd.to_datetime(weeks["week_start"])
    # PostgreSQL sums come back as Decimal
    days[["sales", "n"]] = days[["sales", "n"]].astype("int64")
    weeks[["week_sales", "days"]] = weeks[["week_sales", "days"]].astype("int64")
    days["item"] = days["item"].astype("category")
    weeks[["store", "item", "region"]] = weeks[["store", "item", "region"]].astype("category")
    return SalesHistory(days, weeks)


def load_prices(engine: Engine) -> pd.DataFrame:
    query = select(
        Item.name.label("item"), ItemPrice.price, ItemPrice.applied_from, ItemPrice.applied_to
    ).join(Item, Item.id == ItemPrice.item_id)
    with engine.connect() as connection:
        frame = pd.read_sql(query, connection)
    frame["applied_from"] = pd.to_datetime(frame["applied_from"])
    frame["applied_to"] = pd.to_datetime(frame["applied_to"])
    return frame


def load_inputs(
    engine: Engine, include_generated: bool, before: pd.Timestamp | None = None
) -> tuple[SalesHistory, pd.DataFrame]:
    history = load_history(engine, include_generated=include_generated, before=before)
    if history.empty:
        raise ValueError(
            "no sales in the database: run `python -m mlsys.data_registration register` first"
        )
    return history, load_prices(engine)


def store_ids(engine: Engine) -> tuple[dict[str, str], dict[str, str]]:
    with engine.connect() as connection:
        stores = dict(connection.execute(select(Store.name, Store.id)).all())
        items = dict(connection.execute(select(Item.name, Item.id)).all())
    return stores, items


def fingerprint(history: SalesHistory) -> str:
    """A stable hash of the training data (weekly sales per series), logged with every run."""
    weeks = history.series_weeks.sort_values(["store", "item", "week_start"])
    hashed = pd.util.hash_pandas_object(
        weeks[["store", "item", "week_start", "week_sales", "days"]].astype(str), index=False
    )
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()[:16]
