"""Weekly features per store and item, each computed only from days before its week.

The level forecast ("base") is what a careful analyst would compute by hand:

    base(store, item, week) = share(store, item) x sum over the week's days of
                              level(item, month of day) x dow_profile(item, weekday)

* dow_profile: each item's day-of-week profile over the trailing weeks,
* level: each item's sales per store-day in a calendar month so far, pooled over all
  stores (monthly level shifts are shared by every store, so pooling removes noise); a
  month not seen yet falls back to the latest month's level,
* share: how a store sells an item compared with the average store, trailing weeks.

The LightGBM model then learns the ratio actual / base from level-free features.
Because every value of a row is computed from days strictly before its week, a row is
the same whether or not later data exists: no leakage by construction (tests check it).
"""

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from omegaconf import DictConfig

FEATURES = [
    "share",
    "share_recent",
    "new_month_fraction",
    "level_days",
    "residual_last",
    "residual_mean",
    "price_ratio",
]
WEEK = pd.Timedelta(days=7)
# What the drift check compares with the training reference: the features that describe a
# series' recent behaviour. The calendar's (new_month_fraction, level_days) hold one value
# for every row of a week, so one week against the reference's several would always drift.
MONITORED = ["share", "share_recent", "residual_last", "residual_mean", "price_ratio"]


def week_start(dates: pd.Series) -> pd.Series:
    return (dates - pd.to_timedelta(dates.dt.day_of_week, unit="D")).dt.normalize()


@dataclass(frozen=True)
class SalesHistory:
    """Sales aggregated as the features need them; the database computes these in SQL, so
    millions of daily rows never have to be loaded into memory.

    item_days: item, date, sales (summed over stores), n (number of stores reporting)
    series_weeks: store, item, region, week_start, week_sales, days (days reported)
    """

    item_days: pd.DataFrame
    series_weeks: pd.DataFrame

    @classmethod
    def from_daily(cls, daily: pd.DataFrame) -> "SalesHistory":
        """From daily rows (date, store, item, region, sales): for tests and small data."""
        item_days = daily.groupby(["item", "date"], observed=True, as_index=False).agg(
            sales=("sales", "sum"), n=("sales", "size")
        )
        keyed = daily.assign(week_start=week_start(daily["date"]))
        series_weeks = keyed.groupby(
            ["store", "item", "region", "week_start"], observed=True, as_index=False
        ).agg(week_sales=("sales", "sum"), days=("sales", "size"))
        return cls(item_days, series_weeks)

    @property
    def empty(self) -> bool:
        return self.item_days.empty

    def before(self, day: pd.Timestamp) -> "SalesHistory":
        """Only what was known before `day` (a Monday)."""
        return SalesHistory(
            self.item_days[self.item_days["date"] < day],
            self.series_weeks[self.series_weeks["week_start"] < day],
        )

    def complete_weeks(self) -> list[pd.Timestamp]:
        """Weeks with all seven days present; only these become training targets."""
        days = self.item_days["date"].drop_duplicates()
        counts = days.groupby(week_start(days)).size()
        return sorted(counts[counts == 7].index)

    def next_week(self) -> pd.Timestamp:
        """The week after the week of the latest day."""
        return week_start(self.item_days["date"]).max() + WEEK


def _item_levels(
    item_days: pd.DataFrame, weeks: Iterable[pd.Timestamp], cfg: DictConfig
) -> pd.DataFrame:
    """Per item and week: the level forecast per store, the unseen-month fraction, ..."""
    item_day = item_days.sort_values(["date", "item"], ignore_index=True)
    item_day["dow"] = item_day["date"].dt.day_of_week
    item_day["month"] = item_day["date"].dt.year * 12 + item_day["date"].dt.month
    items = item_day["item"].unique()
    rows = []
    for week in weeks:
        history = item_day[item_day["date"] < week]
        if history.empty:
            continue
        window = history[history["date"] >= week - cfg.dow_window_weeks * WEEK]
        by_dow = window.groupby(["item", "dow"], observed=True)[["sales", "n"]].sum()
        by_item = window.groupby("item", observed=True)[["sales", "n"]].sum()
        per_day = (by_dow["sales"] / by_dow["n"]).unstack("dow").reindex(columns=range(7))
        profile = per_day.div(by_item["sales"] / by_item["n"], axis=0).fillna(1.0)
        profile = profile.reindex(items).fillna(1.0)

        days = pd.date_range(week, periods=7)
        months = days.year * 12 + days.month
        latest_month = history["month"].iloc[-1]
        levels, day_counts = {}, {}
        for month in set(months) | {latest_month}:
            seen = history[history["month"] == month]
            if seen.empty:
                continue
            weights = (
                profile.to_numpy()[
                    pd.Index(items).get_indexer(seen["item"]), seen["dow"].to_numpy()
                ]
                * seen["n"].to_numpy()
            )
            sums = pd.DataFrame(
                {"item": seen["item"].to_numpy(), "s": seen["sales"].to_numpy(), "w": weights}
            )
            sums = sums.groupby("item", observed=True)[["s", "w"]].sum().reindex(items)
            levels[month] = (sums["s"] / sums["w"]).to_numpy()
            day_counts[month] = seen["date"].nunique()

        base = np.zeros(len(items))
        new_weight = np.zeros(len(items))
        level_days = 0.0
        for day, month in zip(days, months, strict=True):
            factor = profile[day.weekday()].to_numpy()
            known = month in levels
            base += levels[month if known else latest_month] * factor
            new_weight += 0.0 if known else factor
            level_days += day_counts[month if known else latest_month] / 7
        rows.append(
            pd.DataFrame(
                {
                    "item": items,
                    "week_start": week,
                    "item_base": base,
                    "new_month_fraction": new_weight / profile.sum(axis=1).to_numpy(),
                    "level_days": level_days,
                }
            )
        )
    return pd.concat(rows, ignore_index=True)


def _before(
    values: pd.Series, weeks: int, window: int, how: str = "sum", min_periods: int = 1
) -> np.ndarray:
    """Sum or mean of each series' values over the `window` weeks before each week.

    The grid holds every series over the same `weeks` consecutive weeks, sorted, so a
    reshape gives one row per series and cumulative sums do all windows at once.
    """
    matrix = values.to_numpy(dtype=float).reshape(-1, weeks)
    previous = np.full_like(matrix, np.nan)
    previous[:, 1:] = matrix[:, :-1]
    present = ~np.isnan(previous)
    sums = np.cumsum(np.where(present, previous, 0.0), axis=1)
    counts = np.cumsum(present, axis=1)
    if window < weeks:
        sums[:, window:] -= sums[:, :-window].copy()
        counts[:, window:] -= counts[:, :-window].copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        result = sums if how == "sum" else sums / counts
    return np.where(counts >= min_periods, result, np.nan).ravel()


def _previous(values: pd.Series, weeks: int) -> np.ndarray:
    return _before(values, weeks, window=1)


def _weekly_price(prices: pd.DataFrame, grid: pd.DataFrame) -> pd.Series:
    """The scheduled price of the item in each row's week (known in advance)."""
    if prices.empty:
        return pd.Series(np.nan, index=grid.index)
    merged = grid[["item", "week_start"]].reset_index().merge(prices, on="item", how="left")
    valid = (merged["applied_from"] <= merged["week_start"]) & (
        merged["week_start"] <= merged["applied_to"]
    )
    merged = merged[valid].sort_values("applied_from").groupby("index").last()
    return merged["price"].reindex(grid.index).astype(float)


def weekly_frame(
    history: SalesHistory,
    prices: pd.DataFrame,
    cfg: DictConfig,
    target_weeks: Iterable[pd.Timestamp] = (),
) -> pd.DataFrame:
    """Rows for every complete week and every target week, features from earlier days only.

    Columns: store, item, region, week_start, sales (NaN unless the week is complete),
    base, last_week, mean_4_weeks (the naive baselines), history_weeks and FEATURES.
    """
    complete = history.complete_weeks()
    targets = sorted(set(complete) | set(pd.Timestamp(t) for t in target_weeks))
    observed = history.series_weeks
    all_weeks = pd.date_range(observed["week_start"].min(), max(targets), freq="7D")

    series = observed[["store", "item", "region"]].drop_duplicates()
    grid = series.merge(pd.DataFrame({"week_start": all_weeks}), how="cross")
    grid = grid.join(
        observed.set_index(["store", "item", "week_start"])[["week_sales", "days"]],
        on=["store", "item", "week_start"],
    )
    grid[["week_sales", "days"]] = grid[["week_sales", "days"]].fillna(0.0)
    grid = grid.sort_values(["store", "item", "week_start"], ignore_index=True)
    grid["sales"] = grid["week_sales"].where(grid["week_start"].isin(complete))

    # share: sales per day of this store vs the average store, over trailing weeks
    item_week = grid.groupby(["item", "week_start"], observed=True)[
        ["week_sales", "days"]
    ].transform("sum")
    grid["item_sales"], grid["item_days"] = item_week["week_sales"], item_week["days"]
    weeks = len(all_weeks)
    share = {}
    for name, window in (("share", cfg.share_window_weeks), ("share_recent", 4)):
        own = _before(grid["week_sales"], weeks, window) / _before(grid["days"], weeks, window)
        avg = _before(grid["item_sales"], weeks, window) / _before(grid["item_days"], weeks, window)
        share[name] = own / avg
    grid["share"] = share["share"]
    grid["share_recent"] = share["share_recent"] / share["share"]

    levels = _item_levels(history.item_days, targets, cfg)
    grid = grid.merge(levels, on=["item", "week_start"], how="left")
    grid["base"] = grid["share"] * grid["item_base"]

    residual = grid["sales"] / grid["base"]
    grid["residual_last"] = _previous(residual, weeks)
    grid["residual_mean"] = _before(residual, weeks, cfg.residual_weeks, how="mean")
    grid["last_week"] = _previous(grid["sales"], weeks)
    grid["mean_4_weeks"] = _before(grid["sales"], weeks, 4, how="mean", min_periods=4)
    grid["history_weeks"] = np.nan_to_num(
        _before(grid["sales"].notna().astype(float), weeks, weeks), nan=0.0
    )

    price = _weekly_price(prices, grid)
    trailing_price = _before(price, weeks, cfg.share_window_weeks, how="mean")
    grid["price_ratio"] = (price / trailing_price).fillna(1.0)

    rows = grid[grid["week_start"].isin(targets)]
    columns = [
        "store",
        "item",
        "region",
        "week_start",
        "sales",
        "base",
        "last_week",
        "mean_4_weeks",
        "history_weeks",
        *FEATURES,
    ]
    return rows[columns].reset_index(drop=True)
