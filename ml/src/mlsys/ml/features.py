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


def week_start(dates: pd.Series) -> pd.Series:
    return (dates - pd.to_timedelta(dates.dt.day_of_week, unit="D")).dt.normalize()


def complete_weeks(daily: pd.DataFrame) -> list[pd.Timestamp]:
    """Weeks with all seven days present; only these become training targets."""
    days = daily[["date"]].drop_duplicates()
    counts = days.groupby(week_start(days["date"])).size()
    return sorted(counts[counts == 7].index)


def _item_levels(
    daily: pd.DataFrame, weeks: Iterable[pd.Timestamp], cfg: DictConfig
) -> pd.DataFrame:
    """Per item and week: the level forecast per store, the unseen-month fraction, ..."""
    item_day = (
        daily.groupby(["item", "date"], observed=True)
        .agg(sales=("sales", "sum"), n=("sales", "size"))
        .reset_index()
    )
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


def _trailing(grid: pd.DataFrame, keys: list[str], column: str, weeks: int) -> pd.Series:
    """Sum of `column` over the `weeks` weeks before each row's week (grid is contiguous)."""
    return grid.groupby(keys, observed=True)[column].transform(
        lambda s: s.shift(1).rolling(weeks, min_periods=1).sum()
    )


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
    daily: pd.DataFrame,
    prices: pd.DataFrame,
    cfg: DictConfig,
    target_weeks: Iterable[pd.Timestamp] = (),
) -> pd.DataFrame:
    """Rows for every complete week and every target week, features from earlier days only.

    Columns: store, item, region, week_start, sales (NaN unless the week is complete),
    base, last_week, mean_4_weeks (the naive baselines), history_weeks and FEATURES.
    """
    daily = daily.assign(week_start=week_start(daily["date"]))
    complete = complete_weeks(daily)
    targets = sorted(set(complete) | set(pd.Timestamp(t) for t in target_weeks))
    all_weeks = pd.date_range(daily["week_start"].min(), max(targets), freq="7D")

    series = daily[["store", "item", "region"]].drop_duplicates()
    grid = series.merge(pd.DataFrame({"week_start": all_weeks}), how="cross")
    observed = daily.groupby(["store", "item", "week_start"], observed=True).agg(
        week_sales=("sales", "sum"), days=("sales", "size")
    )
    grid = grid.join(observed, on=["store", "item", "week_start"])
    grid[["week_sales", "days"]] = grid[["week_sales", "days"]].fillna(0.0)
    grid = grid.sort_values(["store", "item", "week_start"], ignore_index=True)
    grid["sales"] = grid["week_sales"].where(grid["week_start"].isin(complete))

    # share: sales per day of this store vs the average store, over trailing weeks
    item_week = grid.groupby(["item", "week_start"], observed=True)[
        ["week_sales", "days"]
    ].transform("sum")
    grid["item_sales"], grid["item_days"] = item_week["week_sales"], item_week["days"]
    share = {}
    for name, weeks in (("share", cfg.share_window_weeks), ("share_recent", 4)):
        own = _trailing(grid, ["store", "item"], "week_sales", weeks) / _trailing(
            grid, ["store", "item"], "days", weeks
        )
        avg = _trailing(grid, ["store", "item"], "item_sales", weeks) / _trailing(
            grid, ["store", "item"], "item_days", weeks
        )
        share[name] = own / avg
    grid["share"] = share["share"]
    grid["share_recent"] = share["share_recent"] / share["share"]

    levels = _item_levels(daily, targets, cfg)
    grid = grid.merge(levels, on=["item", "week_start"], how="left")
    grid["base"] = grid["share"] * grid["item_base"]

    by_series = grid.groupby(["store", "item"], observed=True)
    residual = grid["sales"] / grid["base"]
    grid["residual_last"] = residual.groupby([grid["store"], grid["item"]], observed=True).shift(1)
    grid["residual_mean"] = residual.groupby(
        [grid["store"], grid["item"]], observed=True
    ).transform(lambda s: s.shift(1).rolling(cfg.residual_weeks, min_periods=1).mean())
    grid["last_week"] = by_series["sales"].shift(1)
    grid["mean_4_weeks"] = by_series["sales"].transform(lambda s: s.shift(1).rolling(4).mean())
    grid["history_weeks"] = (
        by_series["sales"].transform(lambda s: s.notna().cumsum().shift(1)).fillna(0)
    )

    price = _weekly_price(prices, grid)
    trailing_price = price.groupby([grid["store"], grid["item"]], observed=True).transform(
        lambda s: s.shift(1).rolling(cfg.share_window_weeks, min_periods=1).mean()
    )
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
