"""Rolling-origin backtest: for each target week, train only on the weeks before it."""

import lightgbm as lgb
import pandas as pd
from omegaconf import DictConfig
from rich.progress import track
from sqlalchemy import Engine

from mlsys.beverage.tables import BacktestPrediction
from mlsys.common.bulk import bulk_upsert
from mlsys.ml import model
from mlsys.ml.data import store_ids
from mlsys.ml.evaluate import compare, mean_over_weeks


def iso_week(label: str) -> pd.Timestamp:
    """'2021-35' (ISO year-week) -> the Monday of that week."""
    year, week = label.split("-")
    return pd.Timestamp.fromisocalendar(int(year), int(week), 1)


def week_label(week: pd.Timestamp) -> str:
    year, number, _ = week.isocalendar()
    return f"{year}-{number:02d}"


def backtest(
    frame: pd.DataFrame, weeks: list[pd.Timestamp], cfg: DictConfig, show_progress: bool = True
) -> tuple[dict, pd.DataFrame, lgb.Booster]:
    """Scores {"model": {...}, "last_week": {...}, "mean_4_weeks": {...}, "weeks": [...]}
    (means over the weeks), the out-of-sample forecasts, and the last fold's booster."""
    if not weeks:
        raise ValueError("no weeks to backtest")
    per_week: list[dict] = []
    forecasts = []
    for week in track(weeks, description="backtesting", disable=not show_progress, transient=True):
        test = frame[(frame["week_start"] == week) & frame["sales"].notna()]
        if test.empty:
            raise ValueError(f"week {week_label(week)} has no complete sales to evaluate on")
        booster = model.fit(model.training_rows(frame, week, cfg), cfg)
        predicted = model.predict(booster, test)
        scores = compare(test, predicted)
        forecasts.append(test[["week_start", "store", "item"]].assign(prediction=predicted))
        per_week.append({"week": week_label(week), **scores})
    return (
        {**mean_over_weeks(per_week), "weeks": per_week},
        pd.concat(forecasts, ignore_index=True),
        booster,
    )


def store_forecasts(engine: Engine, run_id: str, forecasts: pd.DataFrame) -> int:
    """Keep a backtest's out-of-sample forecasts so the BI can compare them with actuals."""
    stores, items = store_ids(engine)
    rows = pd.DataFrame(
        {
            "run_id": run_id,
            "week_start": forecasts["week_start"].dt.date,
            "store_id": forecasts["store"].astype(str).map(stores),
            "item_id": forecasts["item"].astype(str).map(items),
            "prediction": forecasts["prediction"],
        }
    )
    with engine.begin() as connection:
        return bulk_upsert(connection, BacktestPrediction, rows)
