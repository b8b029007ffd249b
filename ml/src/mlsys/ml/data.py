"""Loading daily sales and prices from the database into frames."""

import hashlib

import pandas as pd
from sqlalchemy import Engine, select

from mlsys.common.tables import Item, ItemPrice, ItemSale, Region, Store


def load_daily_sales(engine: Engine, include_generated: bool = False) -> pd.DataFrame:
    """Daily sales with store, item and region names, ordered by date."""
    query = (
        select(
            ItemSale.date,
            Store.name.label("store"),
            Item.name.label("item"),
            Region.name.label("region"),
            ItemSale.sales,
            ItemSale.total_sales_amount,
        )
        .join(Store, Store.id == ItemSale.store_id)
        .join(Item, Item.id == ItemSale.item_id)
        .join(Region, Region.id == Store.region_id)
        .order_by(ItemSale.date, Store.name, Item.name)
    )
    if not include_generated:
        query = query.where(ItemSale.is_generated.is_(False))
    with engine.connect() as connection:
        frame = pd.read_sql(query, connection)
    frame["date"] = pd.to_datetime(frame["date"])
    for column in ("store", "item", "region"):
        frame[column] = frame[column].astype("category")
    return frame


def load_prices(engine: Engine) -> pd.DataFrame:
    query = select(
        Item.name.label("item"), ItemPrice.price, ItemPrice.applied_from, ItemPrice.applied_to
    ).join(Item, Item.id == ItemPrice.item_id)
    with engine.connect() as connection:
        frame = pd.read_sql(query, connection)
    frame["applied_from"] = pd.to_datetime(frame["applied_from"])
    frame["applied_to"] = pd.to_datetime(frame["applied_to"])
    return frame


def store_ids(engine: Engine) -> tuple[dict[str, str], dict[str, str]]:
    with engine.connect() as connection:
        stores = dict(connection.execute(select(Store.name, Store.id)).all())
        items = dict(connection.execute(select(Item.name, Item.id)).all())
    return stores, items


def fingerprint(daily: pd.DataFrame) -> str:
    """A stable hash of the training data, logged with every run."""
    digest = hashlib.sha256()
    hashed = pd.util.hash_pandas_object(
        daily[["date", "store", "item", "sales"]].astype(str), index=False
    )
    digest.update(hashed.to_numpy().tobytes())
    return digest.hexdigest()[:16]


def load_inputs(engine: Engine, include_generated: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    daily = load_daily_sales(engine, include_generated=include_generated)
    if daily.empty:
        raise ValueError(
            "no sales in the database: run `python -m mlsys.data_registration register` first"
        )
    return daily, load_prices(engine)
