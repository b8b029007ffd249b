"""What the search jobs leave in MLflow.

- A ranker run: parameters, the feature-set version and the data fingerprint, both
  evaluation tables, the propensities, the two models (the ranker registered as
  RANKER_MODEL_NAME), its drift reference, and the champion gate.
- An image-embedding run: parameters, the photos' fingerprint, the per-epoch curve, the
  report (the index's recall, precision@10 beside chance), the Keras model registered as
  IMAGE_EMBEDDING_MODEL_NAME and its SavedModel export (`serve`), and its gate:
  precision@10 of the subcategory on the fixed test photos, the champion scored on the
  same photos now.
- A similar-words run: parameters, the data's fingerprint, the report's figures, the
  table registered as the pyfunc SIMILAR_WORDS_MODEL_NAME."""

import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

from mlsys.aianimals.ranking import (
    DRIFT_REFERENCE_ARTIFACT,
    FEATURE_SET_VERSION,
    FEATURES,
    RANKER_EXPERIMENT,
)
from mlsys.common.tracking import configure_mlflow, log_metrics_batch, model_uri
from mlsys.search.train import RankerParams, Trained

# The gate's metric: NDCG@10 of the served model (the ranker or the regressor, whichever
# was better on the validation searches) on the test searches' logged results. The hidden
# quality is for evaluation only: no decision is made on it.
GATE_METRIC = "logged_clicks.served.ndcg_at_10"


def metric_name(table: str, ranker: str, metric: str) -> str:
    return f"{table}.{ranker}.{metric.replace('@', '_at_')}"


def log_ranker_run(
    *,
    trained: Trained,
    chosen: str,
    params: RankerParams,
    report: dict,
    propensities: np.ndarray,
    fingerprint: str,
    registered_model_name: str | None,
    drift_reference: pd.DataFrame | None = None,
) -> tuple[str, int | None]:
    """Log one run; register the ranker when a name is given. Returns (run_id, version).
    `drift_reference`: what the drift check reads (DRIFT_REFERENCE_ARTIFACT)."""
    import mlflow

    configure_mlflow(RANKER_EXPERIMENT)
    with mlflow.start_run() as run:
        mlflow.log_params(
            {
                **{f"params.{k}": v for k, v in asdict(params).items()},
                "feature_set_version": FEATURE_SET_VERSION,
                "features": ",".join(FEATURES),
                "data_fingerprint": fingerprint,
                "ranker_trees": trained.ranker.num_trees(),
                "regressor_trees": trained.regressor.num_trees(),
                "served": chosen,
            }
        )
        mlflow.set_tags({"feature_set_version": str(FEATURE_SET_VERSION), "data": fingerprint})
        metrics = [
            (metric_name(table, ranker, key), value, 0)
            for table in ("hidden_quality", "logged_clicks")
            for ranker, values in report.get(table, {}).items()
            for key, value in values.items()
        ]
        metrics += [("propensity", float(p), position) for position, p in enumerate(propensities)]
        metrics.append((GATE_METRIC, report["logged_clicks"][chosen]["ndcg@10"], 0))
        if "gap_closed" in report:
            metrics.append(("hidden_quality.gap_closed", report["gap_closed"], 0))
        log_metrics_batch(run.info.run_id, metrics)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "report.json"
            path.write_text(json.dumps(report, indent=2))
            mlflow.log_artifact(str(path))
            served = trained.ranker if chosen == "ranker" else trained.regressor
            importance = dict(
                zip(FEATURES, served.feature_importance("gain").tolist(), strict=True)
            )
            path = Path(tmp) / "feature_importance.json"
            path.write_text(json.dumps(importance, indent=2))
            mlflow.log_artifact(str(path))
            if drift_reference is not None:
                path = Path(tmp) / DRIFT_REFERENCE_ARTIFACT
                drift_reference.to_parquet(path, index=False)
                mlflow.log_artifact(str(path))
        requirements = [f"lightgbm=={lgb.__version__}", f"numpy=={np.__version__}"]
        boosters = {"ranker": trained.ranker, "regressor": trained.regressor}
        for name, booster in boosters.items():
            logged = mlflow.lightgbm.log_model(
                booster,
                name=name,
                pip_requirements=requirements,
                registered_model_name=registered_model_name if name == chosen else None,
            )
            if name == chosen:
                info = logged
    version = info.registered_model_version if registered_model_name else None
    return run.info.run_id, (int(version) if version is not None else None)


EMBEDDING_GATE_METRIC = "precision_at_10_subcategory"


def log_embedding_run(*, trained, params, report: dict, fingerprint: str) -> tuple[str, int]:
    """Log one image-embedding run and register its model; returns (run_id, version)."""
    import mlflow
    from mlsys.aianimals.image_index import IMAGE_EMBEDDING_MODEL_NAME, IMAGE_SIMILARITY_EXPERIMENT
    from mlsys.search.keras_training import keras_requirements, log_saved_model

    configure_mlflow(IMAGE_SIMILARITY_EXPERIMENT)
    with mlflow.start_run() as run:
        mlflow.log_params({**{f"embedding.{k}": v for k, v in asdict(params).items()},
                           "data": fingerprint})  # fmt: skip
        mlflow.set_tags({"data": fingerprint})
        metrics = [
            (key.replace("@", "_at_"), value, 0)
            for key, value in report.items()
            if isinstance(value, float)
        ]
        metrics += [(f"chance.{key}", value, 0) for key, value in report["chance"].items()]
        metrics += [
            (f"epoch.{key}", value, epoch)
            for epoch, record in enumerate(trained.history)
            for key, value in record.items()
        ]
        log_metrics_batch(run.info.run_id, metrics)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "report.json"
            path.write_text(json.dumps(report, indent=2))
            mlflow.log_artifact(str(path))
        logged = mlflow.keras.log_model(
            trained.model,
            name="model",
            registered_model_name=IMAGE_EMBEDDING_MODEL_NAME,
            pip_requirements=keras_requirements(),
        )
        log_saved_model(trained.model)  # uint8 photos in, unit vectors out (TF Serving)
    return run.info.run_id, int(logged.registered_model_version)


def load_embedding_model(version: int | str):
    """The Keras embedding of a version (a number, or `CHAMPION_VERSION`)."""
    import mlflow
    from mlsys.aianimals.image_index import IMAGE_EMBEDDING_MODEL_NAME

    return mlflow.keras.load_model(model_uri(IMAGE_EMBEDDING_MODEL_NAME, version))


# The similar words' gate: the share of the latest logged searches' selected posts their
# phrases find with the similar words (the champion scored on the same searches now).
WORDS_GATE_METRIC = "logged.expanded.recall"


def _numbers(prefix: str, values: dict) -> list[tuple[str, float, int]]:
    """The numbers of a nested report as (dotted key, value, 0) metrics."""
    found = []
    for key, value in values.items():
        name = f"{prefix}{key}".replace("@", "_at_")
        if isinstance(value, dict):
            found += _numbers(f"{name}.", value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found.append((name, float(value), 0))
    return found


def log_words_run(*, words, params, report: dict, fingerprint: str) -> tuple[str, int]:
    """Log one similar-words run (its report without the per-query figures as metrics,
    the report and the table as artifacts) and register the table as a pyfunc model;
    returns (run_id, version)."""
    import sudachipy

    import mlflow
    from mlsys.aianimals.similar_words import SIMILAR_WORDS_EXPERIMENT, SIMILAR_WORDS_MODEL_NAME
    from mlsys.aianimals.similar_words_model import TABLE_ARTIFACT, SimilarWordsModel

    configure_mlflow(SIMILAR_WORDS_EXPERIMENT)
    with mlflow.start_run() as run:
        mlflow.log_params({**{f"words.{k}": v for k, v in asdict(params).items()},
                           "data": fingerprint})  # fmt: skip
        mlflow.set_tags({"data": fingerprint})
        summary = {k: v for k, v in report.items() if k != "similar_words"}
        if "synonym_queries" in summary:
            summary["synonym_queries"] = {
                k: v for k, v in summary["synonym_queries"].items() if k != "per_query"
            }
        log_metrics_batch(run.info.run_id, _numbers("", summary))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "report.json"
            path.write_text(json.dumps(report, indent=2, ensure_ascii=False))
            mlflow.log_artifact(str(path))
            table = Path(tmp) / f"{TABLE_ARTIFACT}.json"
            table.write_text(words.to_json(), encoding="utf-8")
            logged = mlflow.pyfunc.log_model(
                name="model",
                python_model=SimilarWordsModel(),
                artifacts={TABLE_ARTIFACT: str(table)},
                registered_model_name=SIMILAR_WORDS_MODEL_NAME,
                # The table is applied with mlsys-aianimals' tokeniser (this workspace).
                pip_requirements=[
                    f"mlflow-skinny=={mlflow.__version__}",
                    f"sudachipy=={sudachipy.__version__}",
                ],
            )
    return run.info.run_id, int(logged.registered_model_version)
