import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from tests.helpers.paths import REAL, REAL_SALES


@pytest.fixture(scope="session")
def cfg():
    with initialize_config_module("mlsys.ml.conf", version_base=None):
        return compose("config")


@pytest.fixture(scope="session")
def real_daily() -> pd.DataFrame:
    """The real daily sales with store, item and region names, without a database."""
    sales = pd.read_csv(REAL_SALES, parse_dates=["date"])
    stores = pd.read_csv(REAL / "stores.csv").rename(columns={"name": "store"})
    daily = sales.merge(stores[["store", "region"]], on="store")
    daily = daily[["date", "store", "item", "region", "sales", "total_sales_amount"]]
    for column in ("store", "item", "region"):
        daily[column] = daily[column].astype("category")
    return daily.sort_values(["date", "store", "item"], ignore_index=True)


@pytest.fixture(scope="session")
def real_prices() -> pd.DataFrame:
    prices = pd.read_csv(REAL / "item_prices.csv", parse_dates=["applied_from", "applied_to"])
    return prices.rename(columns={"item_name": "item"})[
        ["item", "price", "applied_from", "applied_to"]
    ]
