"""Registration of master data and daily sales: validate everything, then write in one
transaction, so bad input leaves the database exactly as it was."""

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
from rich.progress import Progress
from sqlalchemy import Connection, Engine, func, select

from mlsys.beverage.database import get_engine, upgrade_or_wait
from mlsys.beverage.tables import Item, ItemPrice, ItemSale, Region, Store
from mlsys.common.bulk import DuplicateKey, Staging, bulk_upsert
from mlsys.common.logging import get_logger
from mlsys.data_registration.files import (
    InvalidInput,
    MasterData,
    count_lines,
    is_generated,
    line_numbers,
    read_master,
    read_sales,
    today,
)

log = get_logger(__name__)
SALES_COLUMNS = ["date", "store_id", "item_id", "sales", "total_sales_amount", "is_generated"]


@dataclass
class RegistrationSummary:
    master_rows: int = 0
    sales_rows_read: int = 0
    sales_rows_selected: int = 0
    sales_rows_written: int = 0
    # The weekly feed's file holds nothing after the latest registered week (used up).
    nothing_after: date | None = None


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
        written += bulk_upsert(connection, model, frame)
    return written


def first_week_to_register(connection: Connection, sales_path: Path) -> date:
    """The ISO week after the latest registered one, or the file's first week if none."""
    latest = latest_sales_date(connection)
    if latest is not None and latest > today():
        raise InvalidInput(
            sales_path,
            None,
            "date",
            f"the latest registered sale is dated {latest}, in the future: the weekly feed "
            "cannot tell which week comes next until that row is corrected",
        )
    if latest is not None:
        return week_start(latest) + timedelta(days=7)
    dates = pd.read_csv(sales_path, usecols=["date"])["date"]
    return week_start(pd.to_datetime(dates, format="%Y-%m-%d", errors="coerce").min().date())


def last_day_of_week(iso_week: str) -> date:
    """The Sunday of an ISO week written `YYYY-WW` (e.g. 2021-48)."""
    try:
        year, week = (int(part) for part in iso_week.split("-"))
        return date.fromisocalendar(year, week, 7)
    except ValueError as error:
        raise ValueError(f"{iso_week!r} is not an ISO week like 2021-48") from error


def register(
    *,
    master_dir: Path | None,
    sales_path: Path | None,
    latest_week_only: bool = False,
    until_week: str | None = None,
    engine: Engine | None = None,
    show_progress: bool = True,
) -> RegistrationSummary:
    """Load master data and/or daily sales idempotently; raises InvalidInput on bad input.

    `latest_week_only`: only the ISO week after the latest registered one (the weekly
    feed): nothing (`nothing_after` set) when the file ends before that week, InvalidInput
    when the file holds later weeks but none of it (a delivery is missing). `until_week`:
    only sales up to that ISO week (an initial registration that leaves later weeks to the
    weekly feed).
    Everything happens in one transaction: a bad row anywhere leaves the database as it was.
    """
    last_day = last_day_of_week(until_week) if until_week else None
    engine = engine or get_engine()
    upgrade_or_wait(engine)
    summary = RegistrationSummary()
    master = read_master(master_dir) if master_dir else None

    with engine.begin() as connection:
        if master is not None:
            summary.master_rows = write_master(connection, master)
        if sales_path is None:
            return summary
        week = first_week_to_register(connection, sales_path) if latest_week_only else None
        staging = Staging(connection, ItemSale, SALES_COLUMNS)
        generated = is_generated(sales_path)
        store_ids, item_ids = master_ids(connection)
        with Progress(disable=not show_progress, transient=True) as progress:
            task = progress.add_task(f"reading {sales_path.name}", total=count_lines(sales_path))
            latest_in_file: date | None = None
            for chunk in read_sales(sales_path, store_ids, item_ids):
                summary.sales_rows_read += len(chunk)
                progress.advance(task, len(chunk))
                if not chunk.empty:
                    latest_in_file = max(filter(None, (latest_in_file, chunk["date"].max())))
                if week is not None:
                    chunk = chunk[
                        (chunk["date"] >= week) & (chunk["date"] < week + timedelta(days=7))
                    ]
                if last_day is not None:
                    chunk = chunk[chunk["date"] <= last_day]
                if chunk.empty:
                    continue
                staging.add(chunk.assign(is_generated=generated), lines=line_numbers(chunk))
                summary.sales_rows_selected += len(chunk)
        if week is not None and not summary.sales_rows_selected:
            if latest_in_file is not None and latest_in_file < week:
                # The delivered file is used up: a quiet week for the feed, not an error.
                summary.nothing_after = latest_in_file
                log.info("nothing to register after %s", latest_in_file)
                return summary
            year, number, _ = week.isocalendar()
            raise InvalidInput(
                sales_path,
                None,
                "date",
                f"no sales of week {year}-{number:02d} (from {week}), the week after the "
                "latest registered one: that week's delivery has not arrived; nothing written",
            )
        try:
            summary.sales_rows_written = staging.merge()
        except DuplicateKey as duplicate:
            raise InvalidInput(
                sales_path,
                duplicate.line,
                "date",
                f"duplicate (date, store, item): {duplicate.key}",
            ) from duplicate
    log.info(
        "registered master_rows=%d sales_read=%d sales_selected=%d sales_written=%d",
        summary.master_rows,
        summary.sales_rows_read,
        summary.sales_rows_selected,
        summary.sales_rows_written,
    )
    return summary
