"""Reading and validating the registration files.

Every check is vectorised (pandas) so that millions of rows validate in seconds, and
every failure names the file, the line and the field a person has to fix.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

MASTER_FILES = {
    "regions": ("regions.csv", ["id", "name"]),
    "stores": ("stores.csv", ["id", "name", "region"]),
    "items": ("items.csv", ["id", "name"]),
    "item_prices": ("item_prices.csv", ["id", "item_name", "price", "applied_from", "applied_to"]),
}
SALES_COLUMNS = [
    "date",
    "day_of_week",
    "week_of_year",
    "store",
    "item",
    "sales",
    "total_sales_amount",
]
DAY_NAMES = np.array(["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"])
PROVENANCE_SUFFIX = ".provenance.json"


class InvalidInput(ValueError):
    """Input that cannot be registered; the message reads `file:line:field: problem`."""

    def __init__(self, path: Path, line: int | None, field: str, problem: str):
        super().__init__(f"{path}:{line or '?'}:{field}: {problem}")


def read_csv(path: Path, columns: list[str], nrows: int | None = None) -> pd.DataFrame:
    if not path.is_file():
        raise InvalidInput(path, 0, "-", "file not found")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, nrows=nrows)
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise InvalidInput(
            path, 1, missing[0], f"missing column (header has {list(frame.columns)})"
        )
    return frame[columns]


def line_numbers(frame: pd.DataFrame) -> pd.Index:
    """File lines of a frame's rows: the reader numbers rows from 0 across chunks."""
    return frame.index + 2  # +1 for the header, +1 for counting from one


def _first_bad(path: Path, frame: pd.DataFrame, bad: pd.Series, field: str, problem: str) -> None:
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        value = frame[field].iloc[row]
        raise InvalidInput(path, int(line_numbers(frame)[row]), field, f"{problem}: {value!r}")


def parse_integer(path: Path, frame: pd.DataFrame, field: str, minimum: int = 0) -> pd.Series:
    text = frame[field].str.strip()
    numbers = pd.to_numeric(text.where(text.str.fullmatch(r"-?\d+"), None), errors="coerce")
    _first_bad(path, frame, numbers.isna(), field, "not an integer")
    _first_bad(path, frame, numbers < minimum, field, f"must be at least {minimum}")
    return numbers.astype("int64")


def parse_date(path: Path, frame: pd.DataFrame, field: str) -> pd.Series:
    dates = pd.to_datetime(frame[field].str.strip(), format="%Y-%m-%d", errors="coerce")
    _first_bad(path, frame, dates.isna(), field, "not a date (YYYY-MM-DD)")
    return dates


def require_known(path: Path, frame: pd.DataFrame, field: str, known: set[str], what: str) -> None:
    _first_bad(path, frame, ~frame[field].isin(known), field, f"unknown {what}")


def require_filled(path: Path, frame: pd.DataFrame, fields: list[str]) -> None:
    for field in fields:
        _first_bad(path, frame, frame[field].str.strip() == "", field, "empty value")


@dataclass
class MasterData:
    regions: pd.DataFrame  # id, name
    stores: pd.DataFrame  # id, name, region_id
    items: pd.DataFrame  # id, name
    item_prices: pd.DataFrame  # id, item_id, price, applied_from, applied_to


def read_master(directory: Path) -> MasterData:
    frames = {}
    for key, (name, columns) in MASTER_FILES.items():
        frames[key] = read_csv(directory / name, columns)
        require_filled(directory / name, frames[key], columns)
    regions, stores, items, prices = (frames[k] for k in MASTER_FILES)

    path = directory / "stores.csv"
    require_known(path, stores, "region", set(regions["name"]), "region")
    region_ids = dict(zip(regions["name"], regions["id"], strict=True))
    stores = stores.assign(region_id=stores["region"].map(region_ids))[["id", "name", "region_id"]]

    path = directory / "item_prices.csv"
    require_known(path, prices, "item_name", set(items["name"]), "item")
    item_ids = dict(zip(items["name"], items["id"], strict=True))
    prices = pd.DataFrame(
        {
            "id": prices["id"],
            "item_id": prices["item_name"].map(item_ids),
            "price": parse_integer(path, prices, "price"),
            "applied_from": parse_date(path, prices, "applied_from").dt.date,
            "applied_to": parse_date(path, prices, "applied_to").dt.date,
        }
    )
    return MasterData(regions=regions, stores=stores, items=items, item_prices=prices)


def read_sales(
    path: Path, store_ids: dict[str, str], item_ids: dict[str, str], chunk_rows: int = 500_000
) -> Iterator[pd.DataFrame]:
    """Validated chunks of daily sales: date, store_id, item_id, sales, total_sales_amount.

    Chunks keep memory flat for files of any size; their index counts rows from 0 across
    the file, so `line_numbers` gives each row's line.
    """
    read_csv(path, SALES_COLUMNS, nrows=0)  # the header, checked before any row is read
    reader = pd.read_csv(
        path, dtype=str, keep_default_na=False, usecols=SALES_COLUMNS, chunksize=chunk_rows
    )
    with reader:
        for frame in reader:
            yield _validate_sales(path, frame, store_ids, item_ids)


def _validate_sales(
    path: Path, frame: pd.DataFrame, store_ids: dict[str, str], item_ids: dict[str, str]
) -> pd.DataFrame:
    dates = parse_date(path, frame, "date")
    # A typo such as 2201 for 2021 would make every later week look registered already.
    _first_bad(path, frame, dates.dt.date > today(), "date", "is in the future")
    weekday_names = DAY_NAMES[dates.dt.day_of_week.to_numpy()]
    _first_bad(
        path,
        frame,
        frame["day_of_week"].str.strip().str.upper() != weekday_names,
        "day_of_week",
        "does not match the date",
    )
    weeks = parse_integer(path, frame, "week_of_year", minimum=1)
    _first_bad(
        path,
        frame,
        weeks != dates.dt.isocalendar().week.astype("int64"),
        "week_of_year",
        "does not match the date (ISO week)",
    )
    require_known(path, frame, "store", set(store_ids), "store")
    require_known(path, frame, "item", set(item_ids), "item")
    return pd.DataFrame(
        {
            "date": dates.dt.date,
            "store_id": frame["store"].map(store_ids),
            "item_id": frame["item"].map(item_ids),
            "sales": parse_integer(path, frame, "sales"),
            "total_sales_amount": parse_integer(path, frame, "total_sales_amount"),
        }
    )


def today() -> date:
    """The date in UTC: no sale can have happened later."""
    return datetime.now(UTC).date()


def count_lines(path: Path) -> int:
    """Data lines of a file, counted fast (for the progress bar)."""
    with path.open("rb") as file:
        return sum(block.count(b"\n") for block in iter(lambda: file.read(1 << 20), b"")) - 1


def is_generated(path: Path) -> bool:
    """Synthetic files carry a provenance file beside them that says so."""
    sidecar = path.with_name(path.name + PROVENANCE_SUFFIX)
    return sidecar.is_file() and bool(json.loads(sidecar.read_text()).get("generated"))
