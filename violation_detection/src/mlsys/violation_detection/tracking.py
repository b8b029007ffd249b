"""What every classifier run leaves in MLflow: parameters, the data fingerprint and split,
the report (test, fresh test, validation, baseline), ROC and precision-recall curves, the
validation photos' scores (the drift check's reference), the
fitted pipeline registered as MODEL_NAME with its threshold as a version tag, and the
champion gate on the fixed test set.

The model is logged in MLflow's scikit-learn flavour, serialized by skops (which loads
only the types it is told to trust, never arbitrary pickled code). The fitted pipeline
holds every setting it was fitted with, so the gate and the server score an old champion
as it scored when it was trained (`load_version` is both their loader)."""

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from mlsys.aianimals.moderation import (
    CLASSIFIER_EXPERIMENT,
    CLASSIFIER_MODEL_NAME,
    DRIFT_REFERENCE_ARTIFACT,
    THRESHOLD_TAG,
)
from mlsys.common.tracking import (
    CHAMPION,
    CHAMPION_VERSION,
    champion_gate,
    configure_mlflow,
    log_metrics_batch,
    model_uri,
)

MODEL_NAME, EXPERIMENT = CLASSIFIER_MODEL_NAME, CLASSIFIER_EXPERIMENT
# The gate: ROC AUC on the fixed test set, the champion scored on the same photos now.
GATE_METRIC = "test.roc_auc"
# The report's scored parts, logged as metrics PART.roc_auc, PART.precision, ...
REPORTED = ("test", "fresh_test", "validation", "baseline", "baseline_fresh_test")
# What the pipeline holds besides scikit-learn and numpy: its own encoder.
TRUSTED_TYPES = ["mlsys.violation_detection.train.FisherVectorEncoder"]


def log_run(
    *,
    trained,
    params,
    report: dict,
    curves: dict,
    drift_reference: dict,
    fingerprint: str,
    extra: dict,
):
    """Log one run and register its model; returns (run_id, version). `drift_reference`:
    the validation photos' scores and labels (DRIFT_REFERENCE_ARTIFACT)."""
    import mlflow

    configure_mlflow(EXPERIMENT)
    with mlflow.start_run() as run:
        mlflow.log_params(
            {**{f"model.{k}": v for k, v in asdict(params).items()}, **extra, "data": fingerprint}
        )
        mlflow.set_tags({"data": fingerprint})
        metrics = [
            (f"{part}.{key}", value, 0)
            for part in REPORTED
            if part in report
            for key, value in report[part].items()
        ]
        metrics.append(("train_seconds", trained.seconds, 0))
        log_metrics_batch(run.info.run_id, metrics)
        with tempfile.TemporaryDirectory() as tmp:
            for name, content in (("report.json", report), ("curves.json", curves),
                                  (DRIFT_REFERENCE_ARTIFACT, drift_reference)):  # fmt: skip
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
    """Register the fitted pipeline in the active run (scikit-learn flavour, skops)."""
    from importlib.metadata import version

    import mlflow

    return mlflow.sklearn.log_model(
        model,
        name="model",
        registered_model_name=MODEL_NAME,
        serialization_format="skops",
        skops_trusted_types=TRUSTED_TYPES,
        pip_requirements=[f"scikit-learn=={version('scikit-learn')}",
                          f"mlsys-violation-detection=={version('mlsys-violation-detection')}"],
    )  # fmt: skip


def load_version(version: int | str):
    """The fitted pipeline and threshold of a version (a number, or `CHAMPION_VERSION`):
    what the gate re-scores and what the server serves."""
    import mlflow

    client = mlflow.MlflowClient()
    found = (
        client.get_model_version_by_alias(MODEL_NAME, CHAMPION)
        if version == CHAMPION_VERSION
        else client.get_model_version(MODEL_NAME, str(version))
    )
    model = mlflow.sklearn.load_model(model_uri(MODEL_NAME, found.version))
    return model, float(found.tags[THRESHOLD_TAG])


def gate(
    version: int, candidate_auc: float, test_images: np.ndarray, test_labels: np.ndarray
) -> tuple[bool, float | None]:
    """Promote `version` if its test ROC AUC beats the champion's on the same photos;
    returns whether it was promoted and the champion's ROC AUC (None: no champion)."""
    from mlsys.violation_detection.evaluate import roc_auc
    from mlsys.violation_detection.train import no_animal_scores

    def champion_auc(_) -> float:
        model, _threshold = load_version(CHAMPION_VERSION)
        return roc_auc(test_labels, no_animal_scores(model, test_images))

    verdict = champion_gate(MODEL_NAME, version, GATE_METRIC, candidate_auc, champion_auc,
                            higher_is_better=True)  # fmt: skip
    return verdict.beats, verdict.reference
