"""What every classifier run leaves in MLflow: parameters, the data fingerprint and split,
the per-epoch curve, the report (test, validation, baseline), ROC and precision-recall
curves, the model registered as MODEL_NAME with its threshold as a version tag, and the
champion gate on the fixed test set."""

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mlsys.common.keras_training import SAVED_MODEL, keras_requirements, log_saved_model
from mlsys.common.tracking import (
    CHAMPION,
    configure_mlflow,
    current_champion,
    log_metrics_batch,
    promote_if_better,
)

MODEL_NAME = "aianimals_no_animal_violation"
EXPERIMENT = "aianimals_violation_detection"
# The gate: ROC AUC on the fixed test set, the champion scored on the same photos now.
GATE_METRIC = "test.roc_auc"
THRESHOLD_TAG = "threshold"  # on each model version: the threshold chosen with it


def log_run(*, trained, params, report: dict, curves: dict, fingerprint: str, extra: dict):
    """Log one run and register its model; returns (run_id, version)."""
    import mlflow

    configure_mlflow(EXPERIMENT)
    with mlflow.start_run() as run:
        mlflow.log_params(
            {**{f"cnn.{k}": v for k, v in asdict(params).items()}, **extra, "data": fingerprint}
        )
        mlflow.set_tags({"data": fingerprint})
        metrics = [
            (f"{part}.{key}", value, 0)
            for part in ("test", "validation", "baseline")
            for key, value in report[part].items()
        ]
        metrics += [
            (f"epoch.{key}", value, epoch)
            for epoch, record in enumerate(trained.history)
            for key, value in record.items()
        ]
        log_metrics_batch(run.info.run_id, metrics)
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in (("report.json", report), ("curves.json", curves)):
                path = Path(tmp) / name
                path.write_text(json.dumps(content, indent=2))
                mlflow.log_artifact(str(path))
        logged = log_model(trained.model)
    version = int(logged.registered_model_version)
    mlflow.MlflowClient().set_model_version_tag(
        MODEL_NAME, str(version), THRESHOLD_TAG, repr(report["test"]["threshold"])
    )
    return run.info.run_id, version


def log_model(model):
    """Register the model in the active run, twice over: the Keras model (what training
    and the gate load) and its TensorFlow SavedModel export (`serve`: uint8 photos ->
    probabilities), which the server loads without Keras or the model's Python code."""
    import mlflow

    log_saved_model(model)
    return mlflow.keras.log_model(
        model, name="model", registered_model_name=MODEL_NAME, pip_requirements=keras_requirements()
    )


def load_saved_model(version: int):
    """The SavedModel of a version and its threshold, from the version's run."""
    import tensorflow as tf

    import mlflow

    found = mlflow.MlflowClient().get_model_version(MODEL_NAME, str(version))
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=found.run_id, artifact_path=SAVED_MODEL, dst_path=tmp
            )
        except Exception as error:
            raise LookupError(
                f"{MODEL_NAME}/{version} has no SavedModel export: train a new version"
            ) from error
        return tf.saved_model.load(path), float(found.tags[THRESHOLD_TAG])


def load_version(version: int | str):
    """The Keras model and threshold of a version (a number, or `@champion`)."""
    import mlflow
    from mlsys.violation_detection.train import model_layers

    model_layers()  # the model's own layers, registered before it is loaded
    uri = (
        f"models:/{MODEL_NAME}@{CHAMPION}"
        if version == "@champion"
        else f"models:/{MODEL_NAME}/{version}"
    )
    client = mlflow.MlflowClient()
    found = (
        client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
        if version == "@champion"
        else client.get_model_version(MODEL_NAME, str(version))
    )
    return mlflow.keras.load_model(uri), float(found.tags[THRESHOLD_TAG])


def gate(
    version: int, candidate_auc: float, test_images: np.ndarray, test_labels: np.ndarray
) -> tuple[bool, float | None]:
    """Promote `version` if its test ROC AUC beats the champion's on the same photos;
    returns whether it was promoted and the champion's ROC AUC (None: no champion)."""
    from mlsys.violation_detection.evaluate import roc_auc
    from mlsys.violation_detection.train import no_animal_scores

    champion = current_champion(MODEL_NAME, GATE_METRIC)
    champion_auc = None
    if champion is not None:
        model, _ = load_version("@champion")
        champion_auc = roc_auc(test_labels, no_animal_scores(model, test_images))
    promoted = promote_if_better(
        MODEL_NAME, version, GATE_METRIC, candidate_auc, champion_auc, higher_is_better=True
    )
    return promoted, champion_auc
