"""Registration of master data and daily sales: validate everything, then write in one
transaction, so bad input leaves the database exactly as it was."""

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from rich.progress import Progress
from sqlalchemy import Connection, Engine, func, select

from mlsys.common import migrate
from mlsys.common.bulk import bulk_upsert
from mlsys.common.db import get_engine
from mlsys.common.logging import get_logger
from mlsys.common.tables import Item, ItemPrice, ItemSale, Region, Store
from mlsys.data_registration.files import MasterData, is_generated, read_master, read_sales

log = get_logger(__name__)


@dataclass
class RegistrationSummary:
    master_rows: int = 0
    sales_rows_read: int = 0
    sales_rows_selected: int = 0
    sales_rows_written: int = 0
    weeks: tuple[date, date] | None = None


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def latest_sales_date(connection: Connection) -> date | None:
    return connection.execute(select(func.max(ItemSale.date))).scalar()


def master_ids(connection: Connection) -> tuple[dict[str, str], dict[str, str]]:
    stores = dict(connection.execute(select(Store.name, Store.id)).all())
    items = dict(connection.execute(select(Item.name, Item.id)).all())
    return stores, items


def write_master(connection: Connection, master: MasterData) -> int:
    written = 0
    for model, frame in (
        (Region, master.regions),
        (Store, master.stores),
        (Item, master.items),
        (ItemPrice, master.item_prices),
    ):
        written += bulk_upsert(connection, model.__table__, frame)
    return written


def select_next_week(sales: pd.DataFrame, latest: date | None) -> pd.DataFrame:
    """The rows of the ISO week after the latest registered one (all rows if none yet)."""
    if latest is None:
        first = week_start(min(sales["date"]))
    else:
        first = week_start(latest) + timedelta(days=7)
    return sales[(sales["date"] >= first) & (sales["date"] < first + timedelta(days=7))]


def register(
    *,
    master_dir: Path | None,
    sales_path: Path | None,
    latest_week_only: bool = False,
    engine: Engine | None = None,
    show_progress: bool = True,
) -> RegistrationSummary:
    """Load master data and/or daily sales idempotently; raises InvalidInput on bad input."""
    engine = engine or get_engine()
    migrate.upgrade(engine)
    summary = RegistrationSummary()
    master = read_master(master_dir) if master_dir else None

    with engine.begin() as connection:
        if master is not None:
            summary.master_rows = write_master(connection, master)
        if sales_path is None:
            return summary
        store_ids, item_ids = master_ids(connection)
        sales = read_sales(sales_path, store_ids, item_ids)
        summary.sales_rows_read = len(sales)
        if latest_week_only:
            sales = select_next_week(sales, latest_sales_date(connection))
        sales = sales.assign(is_generated=is_generated(sales_path))
        summary.sales_rows_selected = len(sales)
        if len(sales):
            summary.weeks = (week_start(min(sales["date"])), week_start(max(sales["date"])))
        with Progress(disable=not show_progress, transient=True) as progress:
            task = progress.add_task(f"registering {sales_path.name}", total=len(sales))
            summary.sales_rows_written = bulk_upsert(
                connection,
                ItemSale.__table__,
                sales,
                progress=lambda rows: progress.advance(task, rows),
            )
    log.info(
        "registered master_rows=%d sales_read=%d sales_selected=%d sales_written=%d",
        summary.master_rows,
        summary.sales_rows_read,
        summary.sales_rows_selected,
        summary.sales_rows_written,
    )
    return summary
