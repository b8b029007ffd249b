"""The search ranker's drift check.

The features of the results shown in the latest window's searches (WINDOW_DAYS) against the
champion's reference: the features of the results shown in its test searches, logged with
it at training (the latest searches before it was trained, where its reported quality was
measured). Column by column with Evidently's defaults, unchanged (`drift.dataset_drift`):
for a reference of over 1,000 rows, a continuous column by the Wasserstein distance in
reference standard deviations, a categorical or binary one by the Jensen-Shannon
distance, each drifting at 0.1; the window drifts when half of the columns do, and that
calls for retraining.

Evidently's defaults hold here where the forecaster's week needed a wider distance: a
window holds thousands of results from over a hundred searches, and a week sits within
0.1 of the reference on most columns. Two columns move without a drift: the breed
(38 values, which a week's searches sample thinly) and the posts' age (the platform
ages). On 20 unshifted generated histories the week after training moved 2 to 6 columns
of 15; with newest first the order most searches ask for from that day, 9 or 10 of 15
(docs/operations.md).

The features are the training's own (`mlsys.aianimals.ranking_data`: point in time,
recomputed from the access logs), so that the comparison is like for like. What this
cannot see is the API computing them differently from the logs (its online features come
from post_activity): tests/search/test_training_serving_skew.py holds that.

With fewer than MIN_SEARCHES searches in the window the check cannot decide: it says so
and calls for nothing.
"""

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from mlsys.aianimals.database import get_engine
from mlsys.aianimals.ranking import (
    CATEGORICAL,
    DRIFT_REFERENCE_ARTIFACT,
    RANKER_EXPERIMENT,
    RANKER_MODEL_NAME,
)
from mlsys.aianimals.ranking_data import RankingData, read_ranking_data
from mlsys.aianimals.tables import RANKER_DATASET_MEASURE, ModelDriftResult
from mlsys.common.bulk import bulk_upsert
from mlsys.common.logging import get_logger
from mlsys.common.tracking import configure_mlflow, log_metrics_batch
from mlsys.monitoring.drift import DATASET_SHARE, DatasetDrift, dataset_drift
from mlsys.monitoring.reference import champion_reference

log = get_logger(__name__)

WINDOW_DAYS = 7  # the searches checked: those of the latest this many days
MIN_SEARCHES = 50  # in the window: with fewer the check cannot decide


@dataclass(frozen=True)
class Window:
    """The results shown in a window's searches: their features and how many searches."""

    end: datetime
    days: int
    searches: int
    shown: pd.DataFrame


@dataclass(frozen=True)
class RankerDrift:
    model_name: str
    model_version: int
    window: Window
    reference: pd.DataFrame
    inputs: DatasetDrift | None  # None when undecided

    @property
    def decided(self) -> bool:
        return self.inputs is not None

    @property
    def drifted(self) -> bool:
        return self.inputs is not None and self.inputs.drifted

    def report(self) -> dict:
        inputs = self.inputs
        return {
            "model": self.model_name,
            "version": self.model_version,
            "window_end": self.window.end.isoformat(),
            "days": self.window.days,
            "searches": self.window.searches,
            "results": len(self.window.shown),
            "decided": self.decided,
            "drifted": self.drifted,
            "share": None if inputs is None else inputs.share,
            "columns": {}
            if inputs is None
            else {
                c.column: {"method": c.method, "score": c.score, "drifted": c.drifted}
                for c in inputs.columns
            },
        }


def window(data: RankingData, days: int = WINDOW_DAYS, end: datetime | None = None) -> Window:
    """The results shown in the searches of the `days` up to `end` (default: the latest
    search) among those of `data`."""
    times = data.searches["time"].to_numpy()
    if end is None:
        end = datetime.fromtimestamp(int(times.max()), UTC) if len(times) else datetime.now(UTC)
    start = (end - timedelta(days=days)).timestamp()
    searches = (times > start) & (times <= end.timestamp())
    return Window(end, days, int(searches.sum()), data.shown_features(searches))


def compare(reference: pd.DataFrame, current: Window) -> DatasetDrift | None:
    """The window's features against the reference (see the module's text); None when
    the window has too few searches to decide."""
    if current.searches < MIN_SEARCHES:
        return None
    return dataset_drift(reference, current.shown[reference.columns], set(CATEGORICAL))


def check_ranker(days: int = WINDOW_DAYS, until: datetime | None = None) -> RankerDrift:
    """Check the results shown in the searches of the `days` before `until` (default: up to
    the latest search) against the champion's reference; store the results in PostgreSQL
    and a run in MLflow (when it could decide)."""
    configure_mlflow(RANKER_EXPERIMENT)
    champion, content = champion_reference(
        RANKER_MODEL_NAME, DRIFT_REFERENCE_ARTIFACT, "python -m mlsys.search train-ranker"
    )
    reference = pd.read_parquet(io.BytesIO(content))
    engine = get_engine()
    data = read_ranking_data(engine, min_searches=0, until=until)
    current = window(data, days, until)
    result = RankerDrift(
        RANKER_MODEL_NAME, int(champion.version), current, reference, compare(reference, current)
    )
    if result.decided:
        store(engine, result)
        log_run(result)
    log.info(
        "drift model=%s version=%d window_end=%s searches=%d decided=%s drifted=%s",
        RANKER_MODEL_NAME, result.model_version, current.end, current.searches,
        result.decided, result.drifted,
    )  # fmt: skip
    return result


def store(engine: Engine, result: RankerDrift) -> int:
    """The check's columns and its share as rows of `model_drift_results` (a window checked
    again is replaced): each feature's means in the reference and the window, beside its
    distance."""
    inputs = result.inputs
    assert inputs is not None
    reference, current = result.reference.mean(), result.window.shown.mean()
    key = {"model_name": result.model_name, "model_version": result.model_version,
           "window_end": result.window.end}  # fmt: skip
    rows = [
        *({**key, "measure": c.column, "method": c.method,
           "reference": float(reference[c.column]), "current": float(current[c.column]),
           "score": c.score, "threshold": c.threshold, "drifted": c.drifted}
          for c in inputs.columns),
        {**key, "measure": RANKER_DATASET_MEASURE, "method": "share", "reference": 0.0,
         "current": inputs.share, "score": inputs.share, "threshold": DATASET_SHARE,
         "drifted": inputs.drifted},
    ]  # fmt: skip
    with engine.begin() as connection:
        return bulk_upsert(connection, ModelDriftResult, pd.DataFrame(rows))


def log_run(result: RankerDrift) -> None:
    """One MLflow run a check, in the ranker's experiment, tagged `job=drift`."""
    import mlflow

    inputs = result.inputs
    assert inputs is not None
    end = result.window.end
    with mlflow.start_run(run_name=f"drift-{end:%Y-%m-%d}") as run:
        mlflow.set_tags({"job": "drift", "model_version": str(result.model_version),
                         "window_end": end.isoformat()})  # fmt: skip
        metrics = [
            ("drift_share", inputs.share, 0),
            ("drifted", float(result.drifted), 0),
            ("searches", float(result.window.searches), 0),
            *((f"drift_score_{c.column}", c.score, 0) for c in inputs.columns
              if np.isfinite(c.score)),
        ]  # fmt: skip
        log_metrics_batch(run.info.run_id, metrics)
