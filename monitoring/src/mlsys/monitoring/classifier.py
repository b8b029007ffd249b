"""The no-animal classifier's drift check.

The champion's judgements of the posts created in the latest window (WINDOW_DAYS) against
its judgements of the posts created in the REFERENCE_DAYS before, by two tests:

- the flagged share (the posts it judged violations), by the two-proportion Z-test: a
  change in the share of posts without an animal moves it by the change times the
  classifier's true minus false positive rate;
- the no-animal probability's distribution, by the two-sample Kolmogorov-Smirnov test:
  photos unlike the ones it learned from move it even where the flagged share stays.

Each test at P_VALUE (0.005): Evidently's 0.05 for two tests a week would call for
retraining every ten weeks without any drift; at 0.005 each, one week in a hundred at most.
Either test below it calls for retraining.

Why the champion's own earlier judgements and not its validation photos, as reference:
the validation photos are a labelled sample at the dataset's prevalence (four in five
without an animal), new posts at the app's (a few in a hundred), so their scores never
look alike and every week would drift. The validation photos give the classifier's rates
instead (true and false positive rate at its threshold), which turn the change in the
flagged share into an estimate of the change in the share of posts without an animal
(the adjusted count, Forman 2008): the figure an operator reads beside the verdicts.

The tests need volume: the Z-test sees a doubled share (3 to 6 %) in about 4,000 posts a
window against 16,000 before (docs/operations.md gives the measured power). With fewer
than MIN_POSTS in either window the check cannot decide: it says so and calls for nothing.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from scipy import stats
from sqlalchemy import Engine, select

from mlsys.aianimals.database import get_engine
from mlsys.aianimals.moderation import (
    CLASSIFIER_EXPERIMENT,
    CLASSIFIER_MODEL_NAME,
    DRIFT_REFERENCE_ARTIFACT,
    THRESHOLD_TAG,
)
from mlsys.aianimals.tables import (
    FLAGGED_SHARE_MEASURE,
    NO_ANIMAL_VIOLATION_ID,
    PROBABILITY_MEASURE,
    Animal,
    ModelDriftResult,
    Violation,
)
from mlsys.common.bulk import bulk_upsert
from mlsys.common.logging import get_logger
from mlsys.common.tracking import configure_mlflow, log_metrics_batch
from mlsys.monitoring.drift import two_proportions
from mlsys.monitoring.reference import champion_reference

log = get_logger(__name__)

WINDOW_DAYS = 7  # the posts checked: those created in the latest this many days
REFERENCE_DAYS = 28  # against those created in this many days before
P_VALUE = 0.005  # each test's: drift when its p-value is below this
MIN_POSTS = 200  # in each window: with fewer the check cannot decide


@dataclass(frozen=True)
class Rates:
    """The classifier's rates at its threshold, on its validation photos."""

    true_positive: float  # of the photos without an animal, the share it flags
    false_positive: float  # of the photos with one, the share it flags

    def no_animal_change(self, reference_flagged: float, current_flagged: float) -> float:
        """The adjusted count: by how much the share of posts without an animal changed
        to move the flagged share so (NaN where the rates cannot tell). A change, not the
        shares themselves: those need the false positive rate itself, which the few
        animal photos of validation (about 40) tell only to a few points, while the
        change needs only the rates' difference."""
        spread = self.true_positive - self.false_positive
        if spread <= 0:
            return float("nan")
        return float((current_flagged - reference_flagged) / spread)


@dataclass(frozen=True)
class Measure:
    measure: str
    method: str  # z, ks
    reference: float  # the measure in the reference window (a share, a mean probability)
    current: float  # and in the latest
    score: float  # the test's p-value
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.score < self.threshold


@dataclass(frozen=True)
class ClassifierDrift:
    model_name: str
    model_version: int
    window_end: datetime
    days: int
    reference_posts: int
    current_posts: int
    measures: list[Measure]  # empty when undecided
    rates: Rates

    @property
    def decided(self) -> bool:
        return bool(self.measures)

    @property
    def drifted(self) -> bool:
        return any(measure.drifted for measure in self.measures)

    def measure(self, name: str) -> Measure:
        return next(measure for measure in self.measures if measure.measure == name)

    def no_animal_change(self) -> float | None:
        """The estimated change in the share of posts without an animal (see Rates)."""
        if not self.decided:
            return None
        flagged = self.measure(FLAGGED_SHARE_MEASURE)
        return self.rates.no_animal_change(flagged.reference, flagged.current)

    def report(self) -> dict:
        return {
            "model": self.model_name,
            "version": self.model_version,
            "window_end": self.window_end.isoformat(),
            "days": self.days,
            "posts": {"reference": self.reference_posts, "current": self.current_posts},
            "decided": self.decided,
            "drifted": self.drifted,
            "measures": {
                m.measure: {
                    "method": m.method,
                    "reference": m.reference,
                    "current": m.current,
                    "p_value": m.score,
                    "drifted": m.drifted,
                }
                for m in self.measures
            },
            "rates": {
                "true_positive": self.rates.true_positive,
                "false_positive": self.rates.false_positive,
            },
            "no_animal_change": self.no_animal_change(),
        }


def rates(reference: dict, threshold: float) -> Rates:
    """The rates at `threshold` of the validation scores logged with a version."""
    probability = np.asarray(reference["probability"], dtype=float)
    no_animal = np.asarray(reference["no_animal"], dtype=bool)
    if not no_animal.any() or no_animal.all():
        raise ValueError("the validation reference lacks one of the two classes")
    flagged = probability >= threshold
    return Rates(float(flagged[no_animal].mean()), float(flagged[~no_animal].mean()))


def compare(
    judged: pd.DataFrame,
    window_end: datetime,
    days: int = WINDOW_DAYS,
    reference_days: int = REFERENCE_DAYS,
) -> tuple[list[Measure], int, int]:
    """The tests on one version's judgements (columns created_at, probability,
    is_violation): the posts created in the `days` up to `window_end` against those of the
    `reference_days` before. Returns (measures, reference posts, current posts); no
    measures when either window has fewer than MIN_POSTS."""
    start = window_end - timedelta(days=days)
    created = judged["created_at"]
    current = judged[(created > start) & (created <= window_end)]
    reference = judged[(created > start - timedelta(days=reference_days)) & (created <= start)]
    sizes = len(reference), len(current)
    if min(sizes) < MIN_POSTS:
        return [], *sizes
    flagged = [part["is_violation"].to_numpy(bool) for part in (reference, current)]
    scores = [part["probability"].to_numpy(float) for part in (reference, current)]
    measures = [
        Measure(FLAGGED_SHARE_MEASURE, "z", float(flagged[0].mean()), float(flagged[1].mean()),
                two_proportions(*flagged), P_VALUE),
        Measure(PROBABILITY_MEASURE, "ks", float(scores[0].mean()), float(scores[1].mean()),
                float(stats.ks_2samp(*scores).pvalue), P_VALUE),
    ]  # fmt: skip
    return measures, *sizes


def check_classifier(
    days: int = WINDOW_DAYS, reference_days: int = REFERENCE_DAYS, until: datetime | None = None
) -> ClassifierDrift:
    """Check the champion's judgements of the posts created in the `days` up to `until`
    (default: its latest judged post's creation); store the results in PostgreSQL and a
    run in MLflow (when it could decide)."""
    configure_mlflow(CLASSIFIER_EXPERIMENT)
    champion, content = champion_reference(
        CLASSIFIER_MODEL_NAME, DRIFT_REFERENCE_ARTIFACT, "python -m mlsys.violation_detection train"
    )
    version = int(champion.version)
    classifier_rates = rates(json.loads(content), float(champion.tags[THRESHOLD_TAG]))

    engine = get_engine()
    judged = judgements(engine, f"{CLASSIFIER_MODEL_NAME}/{version}")
    # A champion promoted since the last posts has judged none yet: nothing to decide.
    latest = judged["created_at"].max().to_pydatetime() if len(judged) else datetime.now(UTC)
    window_end = until or latest
    measures, reference_posts, current_posts = compare(judged, window_end, days, reference_days)
    result = ClassifierDrift(CLASSIFIER_MODEL_NAME, version, window_end, days, reference_posts,
                             current_posts, measures, classifier_rates)  # fmt: skip
    if result.decided:
        store(engine, result)
        log_run(result)
    log.info(
        "drift model=%s version=%d window_end=%s posts=%d/%d decided=%s drifted=%s",
        CLASSIFIER_MODEL_NAME, version, window_end, current_posts, reference_posts,
        result.decided, result.drifted,
    )  # fmt: skip
    return result


def judgements(engine: Engine, model_version: str) -> pd.DataFrame:
    """Every no-animal judgement of `model_version`: when its post was created, the
    probability and the verdict."""
    query = (
        select(Animal.created_at, Violation.probability, Violation.is_violation)
        .join(Animal, Animal.id == Violation.animal_id)
        .where(Violation.model_version == model_version,
               Violation.violation_type_id == NO_ANIMAL_VIOLATION_ID)
    )  # fmt: skip
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    frame = pd.DataFrame(rows, columns=["created_at", "probability", "is_violation"])
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True)
    return frame


def store(engine: Engine, result: ClassifierDrift) -> int:
    """The check's measures as rows of `model_drift_results` (a window checked again is
    replaced)."""
    rows = pd.DataFrame(
        [
            {"model_name": result.model_name, "model_version": result.model_version,
             "window_end": result.window_end, "measure": m.measure, "method": m.method,
             "reference": m.reference, "current": m.current, "score": m.score,
             "threshold": m.threshold, "drifted": m.drifted}
            for m in result.measures
        ]
    )  # fmt: skip
    with engine.begin() as connection:
        return bulk_upsert(connection, ModelDriftResult, rows)


def log_run(result: ClassifierDrift) -> None:
    """One MLflow run a check, in the classifier's experiment, tagged `job=drift`."""
    import mlflow

    change = result.no_animal_change()
    with mlflow.start_run(run_name=f"drift-{result.window_end:%Y-%m-%d}") as run:
        mlflow.set_tags({"job": "drift", "model_version": str(result.model_version),
                         "window_end": result.window_end.isoformat()})  # fmt: skip
        metrics = [
            ("drifted", float(result.drifted), 0),
            ("posts", float(result.current_posts), 0),
            ("reference_posts", float(result.reference_posts), 0),
            *((f"{m.measure}_p_value", m.score, 0) for m in result.measures),
            *((f"{m.measure}_{part}", value, 0) for m in result.measures
              for part, value in (("reference", m.reference), ("current", m.current))),
            *((("no_animal_change", change, 0),) if change is not None and np.isfinite(change)
              else ()),
        ]  # fmt: skip
        log_metrics_batch(run.info.run_id, metrics)
