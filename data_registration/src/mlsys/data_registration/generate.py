"""Seeded generator of synthetic beverage sales in the format of the real files.

The real history before 2021-07-05 is not available; this fills it (and builds data
for scale tests). Output is always labelled: file names start with `generated_` and
each sales file has a provenance file beside it that registration reads.
"""

import json
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd

from mlsys.data_registration.files import DAY_NAMES, MASTER_FILES, PROVENANCE_SUFFIX, read_csv

# Month levels shaped like the real 2021 data (July = 1), extended over a whole year.
MONTH_LEVEL = np.array([0.62, 0.66, 0.74, 0.82, 0.90, 0.96, 1.00, 0.88, 0.82, 0.76, 0.82, 0.60])
WEEKDAY_LEVEL = np.array([0.94, 1.00, 1.05, 1.12, 1.19, 0.77, 0.90])
PRICE_ELASTICITY = -1.5
# A shift from `shift_from` on, for drift checks: every price up this much (sales follow by
# the elasticity), every sale down to this share, or the first store closed (selling 0).
PRICE_SHIFT = 1.3
LEVEL_SHIFT = 0.6


class Shift(StrEnum):
    none = "none"
    price = "price"
    level = "level"
    store = "store"


@dataclass(frozen=True)
class GenerationSpec:
    stores: int = 10
    items: int = 10
    start: date = date(2017, 1, 2)
    end: date = date(2021, 7, 4)
    seed: int = 0
    shift: Shift = Shift.none
    shift_from: date | None = None

    def __post_init__(self) -> None:
        if (self.shift == Shift.none) != (self.shift_from is None):
            raise ValueError("a shift needs the day it starts, and only a shift has one")


def _master(spec: GenerationSpec, real_master_dir: Path | None, rng: np.random.Generator):
    """Real names where the real master data has enough of them, made-up ones beyond."""
    real = {}
    if real_master_dir is not None:
        real = {k: read_csv(real_master_dir / n, cols) for k, (n, cols) in MASTER_FILES.items()}
    regions = real.get("regions", pd.DataFrame({"id": ["r0"], "name": ["region_0"]}))

    def pick(key: str, count: int, prefix: str) -> pd.DataFrame:
        frame = real.get(key)
        if frame is not None and count <= len(frame):
            return frame.iloc[:count].reset_index(drop=True)
        names = [f"{prefix}_{n:04d}" for n in range(count)]
        return pd.DataFrame({"id": [f"{prefix[0]}{n:031d}" for n in range(count)], "name": names})

    stores = pick("stores", spec.stores, "store")
    if "region" not in stores.columns:
        stores["region"] = regions["name"].to_numpy()[rng.integers(0, len(regions), len(stores))]
    items = pick("items", spec.items, "item")
    real_prices = real.get("item_prices")
    known = (
        dict(zip(real_prices["item_name"], real_prices["price"].astype(int), strict=True))
        if (real_prices is not None)
        else {}
    )
    base_price = np.array([known.get(n, int(rng.integers(8, 26)) * 10) for n in items["name"]])
    return regions, stores[["id", "name", "region"]], items, base_price


def _prices(spec: GenerationSpec, items: pd.DataFrame, base_price: np.ndarray, rng):
    """One price period per item and calendar year, the price moving up to ±15 %; a price
    shift splits its year's period at the day it starts."""
    rows = []
    for year in range(spec.start.year, spec.end.year + 1):
        change = np.round(base_price * rng.uniform(0.85, 1.15, len(items)) / 10) * 10
        periods = [(date(year, 1, 1), date(year, 12, 31), change, "")]
        shift_from = spec.shift_from
        if spec.shift == Shift.price and shift_from is not None and shift_from.year == year:
            periods = [
                (date(year, 1, 1), shift_from - timedelta(days=1), change, ""),
                (shift_from, date(year, 12, 31), np.round(change * PRICE_SHIFT / 10) * 10, "s"),
            ]
        for first, last, price, suffix in periods:
            for n, name in enumerate(items["name"]):
                rows.append(
                    {
                        "id": f"p{suffix}{year}{n:026d}",
                        "item_name": name,
                        "price": int(price[n]),
                        "applied_from": first.isoformat(),
                        "applied_to": last.isoformat(),
                    }
                )
    return pd.DataFrame(rows)


def _price_per_day(prices: pd.DataFrame, days: pd.DatetimeIndex, n_items: int) -> np.ndarray:
    """(days, items): each day's price of each item, from the periods."""
    price = np.zeros((len(days), n_items), dtype=np.int64)
    for n, (_, periods) in enumerate(prices.groupby("item_name", sort=False)):
        for period in periods.itertuples():
            during = (days >= pd.Timestamp(period.applied_from)) & (
                days <= pd.Timestamp(period.applied_to)
            )
            price[during, n] = period.price
    return price


def generate(spec: GenerationSpec, output_dir: Path, real_master_dir: Path | None) -> Path:
    """Write master files and `generated_item_sale_records_*.csv`; return the sales path."""
    rng = np.random.default_rng(spec.seed)
    output_dir.mkdir(parents=True, exist_ok=True)
    regions, stores, items, base_price = _master(spec, real_master_dir, rng)
    prices = _prices(spec, items, base_price, rng)

    days = pd.date_range(spec.start, spec.end, freq="D")
    n_days, n_stores, n_items = len(days), len(stores), len(items)
    store_level = rng.lognormal(0.0, 0.25, n_stores)
    item_level = rng.lognormal(np.log(35), 0.5, n_items)
    weekday_shape = WEEKDAY_LEVEL * rng.uniform(0.95, 1.05, (n_items, 7))
    yearly = MONTH_LEVEL[days.month.to_numpy() - 1] * (
        1 + 0.03 * np.sin(2 * np.pi * days.day_of_year.to_numpy() / 365.25)
    )
    price = _price_per_day(prices, days, n_items)
    price_effect = (price / base_price) ** PRICE_ELASTICITY

    # mean sales per (day, store, item), then Poisson noise
    mean = (
        yearly[:, None, None]
        * store_level[None, :, None]
        * item_level[None, None, :]
        * weekday_shape.T[days.day_of_week.to_numpy()][:, None, :]
        * price_effect[:, None, :]
    )
    if spec.shift_from is not None:
        shifted = days >= pd.Timestamp(spec.shift_from)
        if spec.shift == Shift.level:
            mean[shifted] *= LEVEL_SHIFT
        elif spec.shift == Shift.store:
            mean[shifted, 0, :] = 0.0
    sales = rng.poisson(mean).astype(np.int64)
    frame = pd.DataFrame(
        {
            "date": np.repeat(days.strftime("%Y-%m-%d").to_numpy(), n_stores * n_items),
            "day_of_week": np.repeat(DAY_NAMES[days.day_of_week.to_numpy()], n_stores * n_items),
            "week_of_year": np.repeat(days.isocalendar().week.to_numpy(), n_stores * n_items),
            "store": np.tile(np.repeat(stores["name"].to_numpy(), n_items), n_days),
            "item": np.tile(items["name"].to_numpy(), n_days * n_stores),
            "sales": sales.reshape(-1),
            "total_sales_amount": (sales * price[:, None, :]).reshape(-1),
        }
    )

    regions.to_csv(output_dir / "regions.csv", index=False)
    stores.to_csv(output_dir / "stores.csv", index=False)
    items.to_csv(output_dir / "items.csv", index=False)
    prices.to_csv(output_dir / "item_prices.csv", index=False)
    sales_path = (
        output_dir / f"generated_item_sale_records_{spec.start:%Y%m%d}_{spec.end:%Y%m%d}.csv"
    )
    frame.to_csv(sales_path, index=False)
    provenance = {
        "generated": True,
        "generator": "python -m mlsys.data_registration generate",
        "spec": {k: str(v) for k, v in asdict(spec).items()},
        "rows": len(frame),
        "note": "synthetic data: never use it to evaluate models on the real weeks",
    }
    sales_path.with_name(sales_path.name + PROVENANCE_SUFFIX).write_text(
        json.dumps(provenance, indent=2)
    )
    return sales_path
