"""Prediction job: the champion forecasts next week's sales for every store and item."""

from dataclasses import dataclass

import pandas as pd

from mlsys.beverage.database import get_engine
from mlsys.beverage.tables import WeeklyForecastFeature, WeeklySalesPrediction
from mlsys.common.bulk import bulk_upsert
from mlsys.common.logging import get_logger
from mlsys.common.metrics import job_figure
from mlsys.common.tracking import CHAMPION, model_uri, run_of
from mlsys.ml import model
from mlsys.ml.backtest import week_label
from mlsys.ml.data import load_inputs, store_ids
from mlsys.ml.features import MONITORED, weekly_frame
from mlsys.ml.tracking import configure, load_run_config

log = get_logger(__name__)
# Pushed by the predict job: the alert on no forecasts for the coming week reads it.
FORECAST_WEEK_END = job_figure(
    "forecast_week_end_timestamp_seconds", "When the latest forecast week ends"
)


@dataclass
class PredictionResult:
    week: str
    version: int
    run_id: str
    rows: int
    written: int


def predict(week: pd.Timestamp | None = None, alias: str = CHAMPION) -> PredictionResult:
    """Store forecasts for `week` (default: the next one).

    Idempotent per week, store, item and model version.
    """
    import mlflow

    name = configure().registered_model_name
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias(name, alias)
    booster = mlflow.lightgbm.load_model(model_uri(name, f"@{alias}"))
    run_id = run_of(version)
    cfg = load_run_config(run_id)

    engine = get_engine()
    history, prices = load_inputs(engine, cfg.data.include_generated)
    target = week if week is not None else history.next_week()
    frame = weekly_frame(history.before(target), prices, cfg.features, target_weeks=[target])
    rows = frame[(frame["week_start"] == target) & frame["base"].notna()]
    stores, items = store_ids(engine)
    predictions = pd.DataFrame(
        {
            "week_start": target.date(),
            "store_id": rows["store"].astype(str).map(stores).to_numpy(),
            "item_id": rows["item"].astype(str).map(items).to_numpy(),
            "model_version": int(version.version),
            "model_name": name,
            "run_id": run_id,
            "prediction": model.predict(booster, rows),
        }
    )
    # What the forecasts were made from, for the drift check: one row a feature.
    keys = ["week_start", "store_id", "item_id", "model_version"]
    features = pd.concat(
        [predictions[keys], rows[MONITORED].reset_index(drop=True).astype(float)], axis=1
    ).melt(id_vars=keys, var_name="feature", value_name="value")
    with engine.begin() as connection:
        written = bulk_upsert(connection, WeeklySalesPrediction, predictions)
        bulk_upsert(connection, WeeklyForecastFeature, features)
    log.info(
        "predicted week=%s version=%s rows=%d written=%d",
        week_label(target),
        version.version,
        len(predictions),
        written,
    )
    return PredictionResult(
        week_label(target), int(version.version), run_id, len(predictions), written
    )
