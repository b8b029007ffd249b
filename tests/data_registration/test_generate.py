"""The generator is seeded, labelled, in the real format, and has the seasonality it claims."""

import json

import pandas as pd
from sqlalchemy import func, select
from typer.testing import CliRunner

from mlsys.beverage.database import get_engine
from mlsys.beverage.tables import ItemSale
from mlsys.data_registration.__main__ import app
from tests.helpers.paths import REAL, REAL_SALES


def generate(output, *args):
    result = CliRunner().invoke(
        app, ["generate", "--output-dir", str(output), "--real-master-dir", str(REAL), *args]
    )
    assert result.exit_code == 0, result.output
    return next(output.glob("generated_*.csv"))


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    args = ("--stores", "3", "--items", "4", "--start", "2020-01-06", "--end", "2020-03-01")
    a = generate(tmp_path / "a", *args, "--seed", "7")
    b = generate(tmp_path / "b", *args, "--seed", "7")
    c = generate(tmp_path / "c", *args, "--seed", "8")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()


def test_output_is_labelled_and_in_the_real_format(tmp_path):
    path = generate(
        tmp_path, "--stores", "2", "--items", "3", "--start", "2020-01-06", "--end", "2020-01-19"
    )
    assert path.name.startswith("generated_")
    provenance = json.loads(path.with_name(path.name + ".provenance.json").read_text())
    assert provenance["generated"] is True and provenance["rows"] == 14 * 2 * 3
    frame = pd.read_csv(path)
    assert list(frame.columns) == list(pd.read_csv(REAL_SALES, nrows=1).columns)
    assert set(frame["store"]) <= set(pd.read_csv(REAL / "stores.csv")["name"])


def test_weekly_and_yearly_seasonality_and_price_effect(tmp_path):
    path = generate(
        tmp_path, "--stores", "10", "--items", "10", "--start", "2018-01-01", "--end", "2019-12-31"
    )
    frame = pd.read_csv(path, parse_dates=["date"])
    by_day = frame.groupby("day_of_week")["sales"].mean()
    assert by_day["FRI"] > by_day["SAT"] * 1.3
    by_month = frame.groupby(frame["date"].dt.month)["sales"].mean()
    assert by_month[7] > by_month[12] * 1.4
    frame["price"] = frame["total_sales_amount"] / frame["sales"].where(frame["sales"] > 0)
    yearly = frame.groupby(["item", frame["date"].dt.year]).agg(
        price=("price", "mean"), sales=("sales", "mean")
    )
    change = yearly.groupby("item").agg(lambda s: s.iloc[1] / s.iloc[0])
    moved = change[(change["price"] - 1).abs() > 0.05]
    assert len(moved) >= 3
    assert ((moved["price"] > 1) == (moved["sales"] < 1)).all()  # dearer sells less


def test_generated_sales_register_as_generated(tmp_path):
    path = generate(
        tmp_path, "--stores", "2", "--items", "2", "--start", "2021-06-28", "--end", "2021-07-04"
    )
    result = CliRunner().invoke(
        app, ["register", "--master-dir", str(tmp_path), "--sales", str(path)]
    )
    assert result.exit_code == 0, result.output
    with get_engine().connect() as connection:
        flags = connection.execute(
            select(ItemSale.is_generated, func.count()).group_by(ItemSale.is_generated)
        ).all()
    assert flags == [(True, 28)]
