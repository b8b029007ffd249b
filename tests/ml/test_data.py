"""The SQL aggregation (SQLite and PostgreSQL dialects) equals the pandas one."""

import pandas as pd
import pytest

from mlsys.beverage.database import get_engine
from mlsys.ml.backtest import iso_week
from mlsys.ml.data import fingerprint, load_history
from mlsys.ml.features import SalesHistory
from tests.helpers.cli import run_cli
from tests.helpers.paths import REAL, REAL_SALES


@pytest.fixture(params=["local", pytest.param("services", marks=pytest.mark.integration)])
def registered(request):
    if request.param == "services":
        request.getfixturevalue("services_profile")
    run_cli(
        "mlsys.data_registration", "register", "--master-dir", str(REAL), "--sales", str(REAL_SALES)
    )


def normalised(history: SalesHistory) -> tuple[pd.DataFrame, pd.DataFrame]:
    days = history.item_days.astype({"item": str}).sort_values(["item", "date"], ignore_index=True)
    weeks = history.series_weeks.astype({"store": str, "item": str, "region": str})
    weeks = weeks.sort_values(["store", "item", "week_start"], ignore_index=True)
    return days[["item", "date", "sales", "n"]], weeks[
        ["store", "item", "region", "week_start", "week_sales", "days"]
    ]


def test_sql_aggregates_equal_pandas(registered, real_daily):
    expected = SalesHistory.from_daily(real_daily)
    loaded = load_history(get_engine())
    for got, want in zip(normalised(loaded), normalised(expected), strict=True):
        pd.testing.assert_frame_equal(got, want, check_dtype=False, check_categorical=False)
    assert fingerprint(loaded) == fingerprint(expected)
    assert loaded.complete_weeks()[-1] == iso_week("2021-51")
    assert loaded.next_week() == iso_week("2022-01")


def test_loading_before_a_week_sees_nothing_of_it(registered):
    history = load_history(get_engine(), before=iso_week("2021-40"))
    assert history.item_days["date"].max() == pd.Timestamp("2021-10-03")
    assert history.series_weeks["week_start"].max() == iso_week("2021-39")
