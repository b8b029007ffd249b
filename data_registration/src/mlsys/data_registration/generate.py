"""Seeded generator of synthetic beverage sales in the format of the real files.

The real history before 2021-07-05 is not available; this fills it (and builds data
for scale tests). Output is always labelled: file names start with `generated_` and
each sales file has a provenance file beside it that registration reads.
"""

import json
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from mlsys.data_registration.files import DAY_NAMES, MASTER_FILES, PROVENANCE_SUFFIX, read_csv

# Month levels shaped like the real 2021 data (July = 1), extended over a whole year.
MONTH_LEVEL = np.array([0.62, 0.66, 0.74, 0.82, 0.90, 0.96, 1.00, 0.88, 0.82, 0.76, 0.82, 0.60])
WEEKDAY_LEVEL = np.array([0.94, 1.00, 1.05, 1.12, 1.19, 0.77, 0.90])
PRICE_ELASTICITY = -1.5


@dataclass(frozen=True)
class GenerationSpec:
    stores: int = 10
    items: int = 10
    start: date = date(2017, 1, 2)
    end: date = date(2021, 7, 4)
    seed: int = 0


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
    """One price period per item and calendar year, the price moving up to ±15 %."""
    rows = []
    for year in range(spec.start.year, spec.end.year + 1):
        change = np.round(base_price * rng.uniform(0.85, 1.15, len(items)) / 10) * 10
        for n, name in enumerate(items["name"]):
            rows.append(
                {
                    "id": f"p{year}{n:026d}",
                    "item_name": name,
                    "price": int(change[n]),
                    "applied_from": f"{year}-01-01",
                    "applied_to": f"{year}-12-31",
                }
            )
    return pd.DataFrame(rows)


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
    year_index = days.year.to_numpy() - spec.start.year
    price_table = prices["price"].to_numpy().reshape(-1, n_items)  # (years, items)
    price = price_table[year_index]  # (days, items)
    price_effect = (price / base_price) ** PRICE_ELASTICITY

    # mean sales per (day, store, item), then Poisson noise
    mean = (
        yearly[:, None, None]
        * store_level[None, :, None]
        * item_level[None, None, :]
        * weekday_shape.T[days.day_of_week.to_numpy()][:, None, :]
        * price_effect[:, None, :]
    )
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
