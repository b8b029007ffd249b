"""One training run of the no-animal classifier, the stage `train` and `retrain` both
call: the photos split by the seed, the classifier fitted on the training photos (with the
moderators' labels for `retrain`), its threshold chosen on validation, the test set and
the fresh test set scored once each beside the baseline, the run logged and registered,
and the gate."""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlsys.common.logging import get_logger

if TYPE_CHECKING:  # the command line imports this module: numpy and the rest when it runs
    from mlsys.aianimals.photos import Photos

log = get_logger(__name__)


@dataclass(frozen=True)
class TrainingOptions:
    """What `train` and `retrain` are asked (their shared options)."""

    images: Path
    fresh_images: Path
    target_precision: float = 0.95
    confidence: float = 0.9
    components: int = 128
    seed: int = 0
    limit: int | None = None
    promote: bool = True


@dataclass
class TrainingOutcome:
    report: dict
    version: int
    threshold: float
    seconds: float
    promoted: bool = False
    champion_auc: float | None = None  # the champion on the same test photos (None: none)
    reviewed_left_out: int = 0  # reviewed photos that show a validation or test photo


def train_and_register(
    options: TrainingOptions, reviewed: "Photos | None" = None
) -> TrainingOutcome:
    import numpy as np

    from mlsys.aianimals.photos import fingerprint, load_photos, split
    from mlsys.violation_detection.baseline import baseline_scores, train_baseline
    from mlsys.violation_detection.dataset import not_in
    from mlsys.violation_detection.evaluate import curves, summary, threshold_for_precision
    from mlsys.violation_detection.tracking import gate, log_run
    from mlsys.violation_detection.train import (
        ClassifierParams,
        no_animal_scores,
        train_classifier,
    )

    target_precision, confidence = options.target_precision, options.confidence
    limit, seed = options.limit, options.seed
    photos = load_photos(options.images, limit=limit, seed=seed)
    fresh = load_photos(options.fresh_images)  # read now: a bad folder fails before training
    parts = split(photos.labels, seed)
    x, y = photos.images, photos.labels
    train_x, train_y = x[parts.train], y[parts.train]
    valid_x, valid_y = x[parts.validation], y[parts.validation]
    test_x, test_y = x[parts.test], y[parts.test]
    added = left_out = 0
    if reviewed is not None and len(reviewed):
        unseen = not_in(reviewed, np.concatenate([valid_x, test_x, fresh.images]))
        added = int(unseen.sum())
        left_out = len(reviewed) - added
        train_x = np.concatenate([train_x, reviewed.images[unseen]])
        train_y = np.concatenate([train_y, reviewed.labels[unseen]])
    log.info(
        "photos=%d (no animal %.1f%%) train=%d (reviewed %d) validation=%d test=%d",
        len(photos), 100 * y.mean(), len(train_y), added, len(valid_y), len(test_y),
    )  # fmt: skip
    params = ClassifierParams(components=options.components, seed=seed)
    trained = train_classifier(train_x, train_y, params)
    valid_scores = no_animal_scores(trained.model, valid_x)
    threshold = threshold_for_precision(valid_y, valid_scores, target_precision, confidence)
    test_scores = no_animal_scores(trained.model, test_x)  # the one look at the test set
    baseline = train_baseline(train_x, train_y, seed)
    baseline_threshold = threshold_for_precision(
        valid_y, baseline_scores(baseline, valid_x), target_precision, confidence
    )
    tested = summary(test_y, test_scores, threshold)
    # Last, the fresh test set: its one look, when nothing is left to decide.
    fresh_scores = no_animal_scores(trained.model, fresh.images)
    fresh_baseline = baseline_scores(baseline, fresh.images)
    report = {
        "test": tested,
        "fresh_test": summary(fresh.labels, fresh_scores, threshold),
        "validation": summary(valid_y, valid_scores, threshold),
        "baseline": summary(test_y, baseline_scores(baseline, test_x), baseline_threshold),
        "baseline_fresh_test": summary(fresh.labels, fresh_baseline, baseline_threshold),
        "target_precision": target_precision,
        "confidence": confidence,
        "train_seconds": round(trained.seconds, 1),
        "reviewed_photos": added,
    }
    extra = {"target_precision": target_precision, "confidence": confidence,
             "photos": len(photos), "train": len(train_y), "validation": len(valid_y),
             "test": len(test_y), "fresh_test": len(fresh), "fresh_data": fingerprint(fresh),
             "limit": limit, "reviewed": added}  # fmt: skip
    data = (
        fingerprint(photos)
        if reviewed is None
        else f"{fingerprint(photos)}+{fingerprint(reviewed)}"
    )
    _, version = log_run(
        trained=trained,
        params=params,
        report=report,
        curves={
            "test": curves(test_y, test_scores),
            "validation": curves(valid_y, valid_scores),
            "fresh_test": curves(fresh.labels, fresh_scores),
        },
        drift_reference={
            "probability": valid_scores.tolist(),
            "no_animal": valid_y.astype(bool).tolist(),
        },
        fingerprint=data,
        extra=extra,
    )
    outcome = TrainingOutcome(report, version, threshold, trained.seconds,
                              reviewed_left_out=left_out)  # fmt: skip
    if options.promote:
        outcome.promoted, outcome.champion_auc = gate(version, tested["roc_auc"], test_x, test_y)
    return outcome
