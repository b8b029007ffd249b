"""MLflow helpers: one tracking setup, batched metric logging, the champion gate."""

import os
from dataclasses import dataclass
from pathlib import Path

from mlsys.common.logging import get_logger
from mlsys.common.settings import mlflow_settings, mlflow_tracking_uri, platform_settings

log = get_logger(__name__)
CHAMPION = "champion"


def configure_mlflow() -> str:
    """Point MLflow at the configured server or the local store; return the URI."""
    import mlflow

    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    settings = mlflow_settings()
    uri = mlflow_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(settings.experiment_name) is None:
        # A server decides where artifacts go; the local store keeps them under MLSYS_HOME
        # instead of MLflow's default of the current directory.
        location = None if settings.tracking_uri else local_artifact_root().as_uri()
        mlflow.create_experiment(settings.experiment_name, artifact_location=location)
    mlflow.set_experiment(settings.experiment_name)
    return uri


def local_artifact_root() -> Path:
    return (platform_settings().home / "mlartifacts").resolve()


def log_metrics_batch(run_id: str, metrics: list[tuple[str, float, int]]) -> None:
    """Log many (key, value, step) metrics in a few requests instead of one per metric."""
    import time

    from mlflow.entities import Metric

    from mlflow import MlflowClient

    now = int(time.time() * 1000)
    entities = [Metric(key, float(value), now, step) for key, value, step in metrics]
    client = MlflowClient()
    for start in range(0, len(entities), 1000):  # the REST API accepts at most 1000 per call
        client.log_batch(run_id, metrics=entities[start : start + 1000])


@dataclass(frozen=True)
class Champion:
    version: int
    run_id: str
    metric: float | None


def current_champion(model_name: str, metric_key: str) -> Champion | None:
    from mlflow.exceptions import MlflowException

    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None
    metric = client.get_run(version.run_id).data.metrics.get(metric_key)
    return Champion(version=int(version.version), run_id=version.run_id, metric=metric)


def promote_if_better(
    model_name: str,
    version: int,
    metric_key: str,
    candidate_metric: float,
    champion_metric: float | None = None,
) -> bool:
    """Give `version` the champion alias only if it beats the champion (lower is better).

    `champion_metric` is the champion scored on the candidate's evaluation data; without
    it the metric logged with the champion's run is used.
    """
    from mlflow import MlflowClient

    champion = current_champion(model_name, metric_key)
    if champion is not None:
        reference = champion_metric if champion_metric is not None else champion.metric
        if reference is not None and candidate_metric >= reference:
            log.info(
                "version %s (%s=%.5f) does not beat champion version %s (%.5f): not promoted",
                version,
                metric_key,
                candidate_metric,
                champion.version,
                reference,
            )
            return False
    MlflowClient().set_registered_model_alias(model_name, CHAMPION, str(version))
    log.info("version %s (%s=%.5f) is the new champion", version, metric_key, candidate_metric)
    return True
