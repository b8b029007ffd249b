"""The forecaster's drift check.

Two signals, either of which calls for retraining:

- input drift: the latest forecast week's monitored features and forecasts against the
  champion's reference (its backtest weeks, logged with it at training), column by column
  with Evidently's default tests (`drift.dataset_drift`);
- realised error: once a week's actuals are registered, the WAPE of the forecasts made for
  it. Above the backtest WAPE of the version that made them times REALISED_WAPE_FACTOR, it
  drifted. A store that closes shows here: its forecasts meet no sales (an absent series
  counts as zero), while its few rows barely move a distribution.

Realised error only calls for retraining when the current champion made the forecasts: an
older version's error was answered when it was replaced.

The input test is not Evidently's default for a reference this small (Kolmogorov-Smirnov
under 1,000 rows) but its distance, the Wasserstein distance in reference standard
deviations, at INPUT_DISTANCE. The rows of one week are not independent draws: they share
that week's shocks (a month's level still estimated from a few days, the season turning),
so a week sits 0.1 to 0.5 standard deviations from the reference's weeks without any
drift, and the p-values of a test that assumes independence call that drift: on 20
unshifted generated histories, KS flagged a residual column in all 20 and the dataset in
2, Wasserstein at Evidently's 0.1 flagged the dataset in 18. A shift moves the residuals by
2.5 to 5.5 standard deviations. The weeks' own shocks are what REALISED_WAPE_FACTOR stands
above too: on those histories a week's realised WAPE was at most 1.24 times the backtest's,
and 1.9 to 12.8 times after a shift (tests/monitoring/test_forecaster_drift.py).
"""

import functools
import io
from dataclasses import dataclass, field
from datetime import date, timedelta

import pandas as pd
from sqlalchemy import Engine, func, select

from mlsys.beverage.database import get_engine
from mlsys.beverage.tables import (
    DATASET_MEASURE,
    REALISED_WAPE_MEASURE,
    DriftResult,
    ItemSale,
    WeeklyForecastFeature,
    WeeklySalesPrediction,
)
from mlsys.beverage.tracking import DRIFT_REFERENCE_ARTIFACT, GATE_METRIC, forecasting_settings
from mlsys.common.bulk import bulk_upsert
from mlsys.common.logging import get_logger
from mlsys.common.tracking import configure_mlflow, log_metrics_batch, run_of
from mlsys.monitoring.drift import DATASET_SHARE, DatasetDrift, dataset_drift
from mlsys.monitoring.reference import champion_reference

log = get_logger(__name__)

REALISED_WAPE_FACTOR = 1.5  # a week's realised WAPE above the backtest's times this: drift
INPUT_DISTANCE = 0.6  # a monitored column this many standard deviations away: drift
REALISED_WEEKS = 8  # the latest forecast weeks scored again by each check


@dataclass(frozen=True)
class RealisedError:
    week: date
    model_version: int
    wape: float
    threshold: float  # the version's backtest WAPE times REALISED_WAPE_FACTOR

    @property
    def drifted(self) -> bool:
        return self.wape > self.threshold


@dataclass
class ForecasterDrift:
    model_name: str
    model_version: int  # the champion
    week: date  # the forecast week checked
    inputs: DatasetDrift
    realised: list[RealisedError] = field(default_factory=list)  # every week with actuals

    @property
    def latest_realised(self) -> RealisedError | None:
        return self.realised[-1] if self.realised else None

    @property
    def drifted(self) -> bool:
        latest = self.latest_realised
        champions_error = (
            latest is not None and latest.model_version == self.model_version and latest.drifted
        )
        return self.inputs.drifted or champions_error

    def report(self) -> dict:
        latest = self.latest_realised
        return {
            "model": self.model_name,
            "version": self.model_version,
            "week": self.week.isoformat(),
            "drifted": self.drifted,
            "inputs": {
                "drifted": self.inputs.drifted,
                "share": self.inputs.share,
                "columns": {
                    c.column: {"method": c.method, "score": c.score, "drifted": c.drifted}
                    for c in self.inputs.columns
                },
            },
            "realised": None
            if latest is None
            else {
                "week": latest.week.isoformat(),
                "version": latest.model_version,
                "wape": latest.wape,
                "threshold": latest.threshold,
                "drifted": latest.drifted,
            },
        }


def check_forecaster(week: date | None = None) -> ForecasterDrift:
    """Check the champion's forecasts of `week` (default: the latest it forecast); store the
    results in PostgreSQL and a run in MLflow."""
    import mlflow

    settings = forecasting_settings()
    configure_mlflow(settings.experiment_name)
    client = mlflow.MlflowClient()
    name = settings.registered_model_name
    champion, content = champion_reference(
        name, DRIFT_REFERENCE_ARTIFACT, "python -m mlsys.ml train"
    )
    version = int(champion.version)
    reference = pd.read_parquet(io.BytesIO(content))

    engine = get_engine()
    week = week or latest_forecast_week(engine, version)
    current = forecast_inputs(engine, week, version)
    inputs = input_drift(reference, current)

    @functools.cache
    def threshold(version: int) -> float:
        run = client.get_run(run_of(client.get_model_version(name, str(version))))
        return run.data.metrics[GATE_METRIC] * REALISED_WAPE_FACTOR

    realised = [
        RealisedError(row.week_start, row.model_version, row.wape, threshold(row.model_version))
        for row in realised_wapes(engine).itertuples()
    ]
    result = ForecasterDrift(name, version, week, inputs, realised)
    store(engine, result)
    log_run(result)
    log.info(
        "drift model=%s version=%d week=%s inputs_share=%.2f realised=%s drifted=%s",
        name,
        version,
        week,
        inputs.share,
        result.latest_realised,
        result.drifted,
    )
    return result


def input_drift(reference: pd.DataFrame, current: pd.DataFrame) -> DatasetDrift:
    """The reference's columns in `current` against the reference (see the module's text)."""
    return dataset_drift(reference, current[reference.columns], threshold=INPUT_DISTANCE)


def wape(actual: pd.Series, forecast: pd.Series) -> float:
    """Weighted absolute percentage error; infinite when nothing sold."""
    total = float(actual.sum())
    return float((actual - forecast).abs().sum()) / total if total > 0 else float("inf")


def latest_forecast_week(engine: Engine, version: int) -> date:
    with engine.connect() as connection:
        week = connection.execute(
            select(func.max(WeeklyForecastFeature.week_start)).where(
                WeeklyForecastFeature.model_version == version
            )
        ).scalar()
    if week is None:
        raise ValueError(
            f"version {version} has forecast nothing yet: run `python -m mlsys.ml predict` first"
        )
    return week


def forecast_inputs(engine: Engine, week: date, version: int) -> pd.DataFrame:
    """One row a forecast of `week` by `version`: its monitored features and the forecast."""
    keys = ["store_id", "item_id"]
    features, predictions = (
        select(WeeklyForecastFeature.store_id, WeeklyForecastFeature.item_id,
               WeeklyForecastFeature.feature, WeeklyForecastFeature.value)
        .where(WeeklyForecastFeature.week_start == week,
               WeeklyForecastFeature.model_version == version),
        select(WeeklySalesPrediction.store_id, WeeklySalesPrediction.item_id,
               WeeklySalesPrediction.prediction)
        .where(WeeklySalesPrediction.week_start == week,
               WeeklySalesPrediction.model_version == version),
    )  # fmt: skip
    with engine.connect() as connection:
        long = pd.read_sql(features, connection)
        forecasts = pd.read_sql(predictions, connection)
    if long.empty:
        raise ValueError(f"no forecasts of version {version} for the week of {week}")
    wide = long.pivot(index=keys, columns="feature", values="value").reset_index()
    return wide.merge(forecasts, on=keys)


def realised_wapes(engine: Engine, weeks: int = REALISED_WEEKS) -> pd.DataFrame:
    """week_start, model_version, wape: each of the latest `weeks` forecast weeks whose seven
    days of sales are registered, scored against them (a series without sales sold
    nothing). Older weeks keep the rows an earlier check stored."""
    with engine.connect() as connection:
        latest = connection.execute(select(func.max(WeeklySalesPrediction.week_start))).scalar()
        if latest is None:
            return pd.DataFrame(columns=["week_start", "model_version", "wape"])
        forecasts = pd.read_sql(
            select(WeeklySalesPrediction.week_start, WeeklySalesPrediction.model_version,
                   WeeklySalesPrediction.store_id, WeeklySalesPrediction.item_id,
                   WeeklySalesPrediction.prediction)
            .where(WeeklySalesPrediction.week_start > latest - timedelta(weeks=weeks)),
            connection,
        )  # fmt: skip
        rows = []
        for week in sorted(forecasts["week_start"].unique()):
            end = week + timedelta(days=6)
            in_week = ItemSale.date.between(week, end)
            days = connection.execute(
                select(func.count(func.distinct(ItemSale.date))).where(in_week)
            ).scalar_one()
            if days < 7:
                continue  # its actuals are not all registered yet
            actuals = pd.read_sql(
                select(ItemSale.store_id, ItemSale.item_id, func.sum(ItemSale.sales).label("sales"))
                .where(in_week)
                .group_by(ItemSale.store_id, ItemSale.item_id),
                connection,
            )  # fmt: skip
            scored = forecasts[forecasts["week_start"] == week].merge(
                actuals, on=["store_id", "item_id"], how="left"
            )
            scored["sales"] = scored["sales"].fillna(0).astype(float)
            for version, by in scored.groupby("model_version"):
                error = wape(by["sales"], by["prediction"])
                rows.append({"week_start": week, "model_version": int(version), "wape": error})
    return pd.DataFrame(rows, columns=["week_start", "model_version", "wape"])


def finite(score: float) -> float:
    """A score as the database and MLflow can hold it: a WAPE is infinite when nothing sold."""
    return min(score, 1e9)


def store(engine: Engine, result: ForecasterDrift) -> int:
    """The check's measures as rows of `drift_results` (a week checked again is replaced)."""

    def row(version: int, week: date, measure: str, method: str, score: float,
            threshold: float, drifted: bool) -> dict:  # fmt: skip
        return {"model_name": result.model_name, "model_version": version, "week_start": week,
                "measure": measure, "method": method, "score": finite(score),
                "threshold": threshold, "drifted": drifted}  # fmt: skip

    version, week, inputs = result.model_version, result.week, result.inputs
    rows = [
        *(row(version, week, c.column, c.method, c.score, c.threshold, c.drifted)
          for c in inputs.columns),
        row(version, week, DATASET_MEASURE, "share", inputs.share, DATASET_SHARE, inputs.drifted),
        *(row(r.model_version, r.week, REALISED_WAPE_MEASURE, "wape", r.wape, r.threshold,
              r.drifted) for r in result.realised),
    ]  # fmt: skip
    with engine.begin() as connection:
        return bulk_upsert(connection, DriftResult, pd.DataFrame(rows))


def log_run(result: ForecasterDrift) -> None:
    """One MLflow run a check, in the forecaster's experiment, tagged `job=drift`."""
    import mlflow

    latest = result.latest_realised
    with mlflow.start_run(run_name=f"drift-{result.week}") as run:
        mlflow.set_tags({"job": "drift", "model_version": str(result.model_version),
                         "week": result.week.isoformat()})  # fmt: skip
        metrics = [
            ("drift_share", result.inputs.share, 0),
            ("drifted", float(result.drifted), 0),
            *((f"drift_score_{c.column}", c.score, 0) for c in result.inputs.columns),
        ]
        if latest is not None:
            metrics.append((REALISED_WAPE_MEASURE, finite(latest.wape), 0))
        log_metrics_batch(run.info.run_id, metrics)
