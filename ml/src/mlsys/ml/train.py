"""Training job: backtest the latest weeks, fit on all of them, register, promotion gate."""

from dataclasses import dataclass

import pandas as pd
from omegaconf import DictConfig

from mlsys.common.db import get_engine
from mlsys.common.logging import get_logger
from mlsys.common.settings import mlflow_settings
from mlsys.common.tracking import configure_mlflow, current_champion, promote_if_better
from mlsys.ml import model
from mlsys.ml.backtest import backtest, store_forecasts, week_label
from mlsys.ml.data import fingerprint, load_inputs
from mlsys.ml.features import WEEK, SalesHistory, weekly_frame
from mlsys.ml.tracking import load_run_config, log_forecasting_run

log = get_logger(__name__)
GATE_METRIC = "backtest_model_wape"


@dataclass
class TrainingResult:
    run_id: str
    version: int
    wape: float
    champion_wape: float | None
    promoted: bool


def champion_wape_on(weeks: list[pd.Timestamp], history: SalesHistory, prices) -> float | None:
    """The champion's config backtested on the same weeks as the candidate (a fair gate)."""
    champion = current_champion(mlflow_settings().registered_model_name, GATE_METRIC)
    if champion is None:
        return None
    champion_cfg = load_run_config(champion.run_id)
    frame = weekly_frame(history, prices, champion_cfg.features)
    scores, _, _ = backtest(frame, weeks, champion_cfg, show_progress=False)
    return scores["model"]["wape"]


def train(cfg: DictConfig) -> TrainingResult:
    configure_mlflow()
    engine = get_engine()
    history, prices = load_inputs(engine, cfg.data.include_generated)
    frame = weekly_frame(history, prices, cfg.features)
    weeks = history.complete_weeks()[-cfg.evaluation.weeks :]
    scores, forecasts, _ = backtest(frame, weeks, cfg)

    rows = model.training_rows(frame, weeks[-1] + WEEK, cfg)
    booster = model.fit(rows, cfg)
    name = mlflow_settings().registered_model_name
    run_id, version = log_forecasting_run(
        cfg=cfg,
        scores=scores,
        booster=booster,
        sample=rows,
        tags={
            "job": "train",
            "data_fingerprint": fingerprint(history),
            "training_rows": str(len(rows)),
            "trained_through_week": week_label(weeks[-1]),
            "evaluation_weeks": f"{week_label(weeks[0])}..{week_label(weeks[-1])}",
        },
        registered_model_name=name,
    )
    store_forecasts(engine, run_id, forecasts)
    wape = scores["model"]["wape"]
    champion_wape = champion_wape_on(weeks, history, prices)
    if champion_wape is not None:
        import mlflow

        mlflow.MlflowClient().log_metric(run_id, "champion_wape_same_weeks", champion_wape)
    # The gate compares both on the same weeks, so the candidate's own metric stands in for it.
    promoted = promote_if_better(name, version, GATE_METRIC, wape, champion_metric=champion_wape)
    log.info(
        "trained version=%s wape=%.4f champion_wape=%s promoted=%s",
        version,
        wape,
        champion_wape,
        promoted,
    )
    return TrainingResult(run_id, version, wape, champion_wape, promoted)
