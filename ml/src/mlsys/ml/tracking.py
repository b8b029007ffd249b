"""What every forecasting run leaves in MLflow: config, data fingerprint, metrics, model."""

import tempfile
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from mlsys.beverage.tracking import (
    DRIFT_REFERENCE_ARTIFACT,
    Forecaster,
    ForecastingSettings,
    backtest_metric,
    forecasting_settings,
    week_metric,
)
from mlsys.common.tracking import configure_mlflow, log_metrics_batch
from mlsys.ml.features import FEATURES, MONITORED

CONFIG_ARTIFACT = "config.yaml"


def configure() -> ForecastingSettings:
    """MLflow pointed at the forecasting experiment; returns the forecaster's names."""
    settings = forecasting_settings()
    configure_mlflow(settings.experiment_name)
    return settings


def flat_params(cfg: DictConfig) -> dict[str, str]:
    flat = pd.json_normalize(OmegaConf.to_container(cfg, resolve=True), sep=".").iloc[0]
    return {key: str(value) for key, value in flat.items()}


def log_forecasting_run(
    *,
    cfg: DictConfig,
    scores: dict,
    booster: lgb.Booster,
    sample: pd.DataFrame,
    tags: dict[str, str],
    registered_model_name: str | None = None,
    reference: pd.DataFrame | None = None,
) -> tuple[str, int | None]:
    """Log one run; register the model when a name is given, with the drift check's
    `reference` beside it. Returns (run_id, version)."""
    from mlflow.models import infer_signature

    import mlflow

    with mlflow.start_run() as run:
        mlflow.log_params(flat_params(cfg))
        mlflow.set_tags(tags)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / CONFIG_ARTIFACT
            path.write_text(OmegaConf.to_yaml(cfg, resolve=True))
            mlflow.log_artifact(str(path))
            if reference is not None:
                path = Path(tmp) / DRIFT_REFERENCE_ARTIFACT
                reference.to_parquet(path, index=False)
                mlflow.log_artifact(str(path))
        metrics = [
            (backtest_metric(Forecaster(name), key), value, 0)
            for name, values in scores.items()
            if name != "weeks"
            for key, value in values.items()
        ]
        metrics += [
            (week_metric(Forecaster(name)), week[name]["wape"], step)
            for step, week in enumerate(scores["weeks"])
            for name in week
            if name != "week"
        ]
        log_metrics_batch(run.info.run_id, metrics)
        features = sample[FEATURES].astype(float)
        info = mlflow.lightgbm.log_model(
            booster,
            name="model",
            signature=infer_signature(features, booster.predict(features)),
            input_example=features.head(5),
            # Pinned from the environment: MLflow's own inference costs seconds per run.
            pip_requirements=[
                f"lightgbm=={lgb.__version__}",
                f"pandas=={pd.__version__}",
                f"numpy=={np.__version__}",
            ],
            registered_model_name=registered_model_name,
        )
    version = info.registered_model_version if registered_model_name else None
    return run.info.run_id, (int(version) if version is not None else None)


# Enough rows for every drift test (above 1,000 they are distances, not p-values), and a
# small artifact however many series there are.
REFERENCE_ROWS = 10_000


def drift_reference(frame: pd.DataFrame, forecasts: pd.DataFrame) -> pd.DataFrame:
    """The backtest weeks' monitored features beside their out-of-sample forecasts: what
    the model's inputs and outputs looked like when it was judged (a seeded sample)."""
    rows = frame.merge(forecasts, on=["week_start", "store", "item"])
    reference = rows[[*MONITORED, "prediction"]].astype(float)
    if len(reference) > REFERENCE_ROWS:
        reference = reference.sample(REFERENCE_ROWS, random_state=0)
    return reference.reset_index(drop=True)


def load_run_config(run_id: str) -> DictConfig:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=CONFIG_ARTIFACT, dst_path=tmp
        )
        config = OmegaConf.load(path)
    if not isinstance(config, DictConfig):
        raise ValueError(f"run {run_id}: {CONFIG_ARTIFACT} is not a mapping")
    return config
