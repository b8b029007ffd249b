"""Registration is idempotent, validates its input, and leaves the database as it was on
bad input; on both the embedded SQLite and PostgreSQL."""

from datetime import date

import pandas as pd
import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from mlsys.beverage.database import get_engine
from mlsys.beverage.tables import Item, ItemPrice, ItemSale, Region, Store
from mlsys.data_registration.__main__ import app
from tests.helpers.paths import REAL, REAL_SALES

PROFILES = ["local", pytest.param("services", marks=pytest.mark.integration)]


@pytest.fixture(params=PROFILES)
def profile(request):
    if request.param == "services":
        request.getfixturevalue("services_profile")
    return request.param


def register(*args: str):
    return CliRunner().invoke(app, ["register", *map(str, args)])


def snapshot() -> dict:
    """Row counts of every table and a checksum of the sales."""
    with get_engine().connect() as connection:
        counts = {
            model.__tablename__: connection.execute(
                select(func.count()).select_from(model)
            ).scalar()
            for model in (Region, Store, Item, ItemPrice, ItemSale)
        }
        counts["sales_sum"] = connection.execute(select(func.sum(ItemSale.sales))).scalar()
    return counts


def write_sales(frame: pd.DataFrame, path) -> str:
    frame.to_csv(path, index=False)
    return str(path)


def test_registering_twice_changes_no_row(profile):
    first = register("--master-dir", REAL, "--sales", REAL_SALES)
    assert first.exit_code == 0, first.output
    after_first = snapshot()
    assert after_first == {
        "regions": 3,
        "stores": 10,
        "items": 10,
        "item_prices": 10,
        "item_sales": 18_000,
        "sales_sum": int(pd.read_csv(REAL_SALES)["sales"].sum()),
    }
    second = register("--master-dir", REAL, "--sales", REAL_SALES)
    assert second.exit_code == 0, second.output
    assert "written: 0" in second.output
    assert snapshot() == after_first


def test_changed_rows_are_updated_in_place(profile, tmp_path):
    register("--master-dir", REAL, "--sales", REAL_SALES)
    sales = pd.read_csv(REAL_SALES)
    sales.loc[0, "sales"] += 1000
    result = register("--sales", write_sales(sales, tmp_path / "corrected.csv"))
    assert result.exit_code == 0, result.output
    assert "written: 1" in result.output
    assert snapshot()["item_sales"] == 18_000


BAD_INPUTS = {
    # kind: (row to break, column, bad value) -> expected line is row + 2 (header, 1-based)
    "non-numeric sales": (4, "sales", "twelve"),
    "unknown store": (6, "store", "atlantis"),
    "unknown item": (8, "item", "cola"),
    "bad date": (2, "date", "2021-13-45"),
    "negative sales": (10, "sales", "-3"),
    "date in the future": (3, "date", "2201-10-04"),
    "week of year not the date's": (5, "week_of_year", "3"),
}


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_bad_input_names_file_line_field_and_commits_nothing(profile, tmp_path, kind):
    sales = pd.read_csv(REAL_SALES, dtype=str)
    assert (
        register(
            "--master-dir", REAL, "--sales", write_sales(sales[:5000], tmp_path / "ok.csv")
        ).exit_code
        == 0
    )
    before = snapshot()

    row, column, value = BAD_INPUTS[kind]
    bad = sales[4000:9000].reset_index(drop=True)  # new rows too: none of them may land
    bad.loc[row, column] = value
    path = write_sales(bad, tmp_path / "bad.csv")
    result = register("--master-dir", REAL, "--sales", path)

    assert result.exit_code == 1
    assert f"{path}:{row + 2}:{column}:" in result.output
    assert snapshot() == before


def test_missing_column_is_reported_on_the_header_line(profile, tmp_path):
    register("--master-dir", REAL)
    before = snapshot()
    sales = pd.read_csv(REAL_SALES, dtype=str).drop(columns="total_sales_amount")
    path = write_sales(sales, tmp_path / "no_amount.csv")
    result = register("--sales", path)
    assert result.exit_code == 1
    assert f"{path}:1:total_sales_amount: missing column" in result.output
    assert snapshot() == before


def test_duplicate_rows_are_reported_with_the_second_line(profile, tmp_path):
    sales = pd.read_csv(REAL_SALES, dtype=str)[:3000]
    duplicated = pd.concat([sales, sales.iloc[[10]]], ignore_index=True)  # line 3002 repeats 12
    path = write_sales(duplicated, tmp_path / "dup.csv")
    result = register("--master-dir", REAL, "--sales", path)
    assert result.exit_code == 1
    assert f"{path}:3002:date: duplicate (date, store, item)" in result.output
    assert snapshot()["item_sales"] == 0


def test_unknown_region_in_master_data_fails(tmp_path):
    master = tmp_path / "master"
    master.mkdir()
    for file in REAL.glob("*.csv"):
        (master / file.name).write_text(file.read_text())
    stores = pd.read_csv(master / "stores.csv")
    stores.loc[3, "region"] = "mars"
    stores.to_csv(master / "stores.csv", index=False)
    result = register("--master-dir", master)
    assert result.exit_code == 1
    assert f"{master / 'stores.csv'}:5:region: unknown region" in result.output


def test_latest_week_only_registers_the_week_after_the_latest(profile, tmp_path):
    sales = pd.read_csv(REAL_SALES)
    through_week_39 = write_sales(sales[sales["date"] < "2021-10-04"], tmp_path / "head.csv")
    assert register("--master-dir", REAL, "--sales", through_week_39).exit_code == 0
    before = snapshot()["item_sales"]

    result = register("--sales", REAL_SALES, "--latest-week-only")
    assert result.exit_code == 0, result.output
    with get_engine().connect() as connection:
        latest = connection.execute(select(func.max(ItemSale.date))).scalar()
    assert str(latest) == "2021-10-10"  # the Sunday of ISO week 40
    assert snapshot()["item_sales"] == before + 700  # 7 days x 10 stores x 10 items

    register("--sales", REAL_SALES, "--latest-week-only")
    assert snapshot()["item_sales"] == before + 1400


def test_a_latest_date_in_the_future_fails_the_weekly_feed_loudly(profile, tmp_path):
    """Issue 10, item 8: such a row made --latest-week-only register nothing, exit 0."""
    assert register("--master-dir", REAL, "--sales", REAL_SALES).exit_code == 0
    with get_engine().begin() as connection:
        connection.execute(
            update(ItemSale)
            .where(ItemSale.date == date(2021, 12, 31))
            .values(date=date(2201, 12, 31))  # written by hand, or by an older version
        )
    result = register("--sales", REAL_SALES, "--latest-week-only")
    assert result.exit_code == 1
    assert "the latest registered sale is dated 2201-12-31, in the future" in result.output


def test_an_initial_registration_can_stop_at_a_week_for_the_weekly_feed(profile):
    """Issue 11, item 5: the initial registration took the whole file, so the weekly feed
    found nothing after it and registered 0 rows every week, silently."""
    first = register("--master-dir", REAL, "--sales", REAL_SALES, "--until-week", "2021-48")
    assert first.exit_code == 0, first.output
    with get_engine().connect() as connection:
        latest = connection.execute(select(func.max(ItemSale.date))).scalar()
    assert str(latest) == "2021-12-05"  # the Sunday of ISO week 48
    weeks = []
    for _ in range(4):
        weekly = register("--sales", REAL_SALES, "--latest-week-only")
        assert weekly.exit_code == 0, weekly.output
        weeks.append(int(weekly.output.rsplit("written: ", 1)[1]))
    assert weeks == [700, 700, 700, 500]  # weeks 49-51, and 52 whose file ends on Friday
    # Issue 31: the file used up is a quiet Monday (exit 0), not a failed run each week.
    before = snapshot()["item_sales"]
    nothing = register("--sales", REAL_SALES, "--latest-week-only")
    assert nothing.exit_code == 0, nothing.output
    assert "nothing to register: the file's sales end on 2021-12-31" in nothing.output
    assert snapshot()["item_sales"] == before
    assert register("--sales", REAL_SALES, "--until-week", "48").exit_code == 2


def test_a_missing_week_in_the_middle_of_the_file_fails_the_weekly_feed(profile, tmp_path):
    """A file that holds later weeks but not the next one: a delivery is missing."""
    assert (
        register("--master-dir", REAL, "--sales", REAL_SALES, "--until-week", "2021-48").exit_code
        == 0
    )
    sales = pd.read_csv(REAL_SALES)
    gap = write_sales(sales[(sales["date"] < "2021-12-06") | (sales["date"] >= "2021-12-13")],
                      tmp_path / "gap.csv")  # fmt: skip
    result = register("--sales", gap, "--latest-week-only")
    assert result.exit_code == 1
    assert "no sales of week 2021-49" in result.output and "nothing written" in result.output
