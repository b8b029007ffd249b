"""What the moderation tests share: a tiny classifier registered as the champion."""

from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np

from tests.helpers.paths import ROOT

IMAGES = ROOT / "dataset/images"
# The pipeline `train` fits, at a size that fits in a second: one patch size, two
# Gaussians over four dims, fitted on 40 of the dataset's photos.
TINY = {"cells": (8,), "components": 2, "dims": 4}


@cache
def tiny_classifier():
    from mlsys.aianimals.photos import load_photos
    from mlsys.violation_detection.train import ClassifierParams, train_classifier

    photos = load_photos(IMAGES, limit=40)
    return train_classifier(photos.images, photos.labels, ClassifierParams(**TINY)).model


def register_tiny_classifier(
    threshold: float | Callable[[dict[str, float]], float], photos: dict[str, Path] | None = None
):
    """Register the tiny classifier (in the MLflow of the environment) as the champion;
    returns (version, scores of `photos`, threshold). `threshold` may be chosen from the
    scores of `photos`: the tests that do so check the moderation loop, not the
    classifier (its training has tests of its own)."""
    import mlflow
    from mlsys.aianimals.photos import decoded
    from mlsys.common.tracking import CHAMPION, configure_mlflow
    from mlsys.violation_detection.tracking import (
        EXPERIMENT,
        MODEL_NAME,
        THRESHOLD_TAG,
        log_model,
    )
    from mlsys.violation_detection.train import no_animal_scores

    configure_mlflow(EXPERIMENT)
    model = tiny_classifier()
    scores = {}
    if photos:
        values = no_animal_scores(model, np.stack([decoded(path) for path in photos.values()]))
        scores = dict(zip(photos, values.tolist(), strict=True))
    if callable(threshold):
        threshold = threshold(scores)
    with mlflow.start_run():
        logged = log_model(model)
    version = str(logged.registered_model_version)
    client = mlflow.MlflowClient()
    client.set_model_version_tag(MODEL_NAME, version, THRESHOLD_TAG, repr(float(threshold)))
    client.set_registered_model_alias(MODEL_NAME, CHAMPION, version)
    return int(version), scores, float(threshold)
