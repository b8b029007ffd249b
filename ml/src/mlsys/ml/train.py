"""Training job: backtest the latest weeks, fit on all of them, register, promotion gate."""

from dataclasses import dataclass

import pandas as pd
from omegaconf import DictConfig

from mlsys.beverage.database import get_engine
from mlsys.beverage.tracking import CHAMPION_SAME_WEEKS_METRIC, GATE_METRIC
from mlsys.common.logging import get_logger
from mlsys.common.tracking import Champion, champion_gate, run_of
from mlsys.ml import model
from mlsys.ml.backtest import backtest, iso_week, store_forecasts, week_label
from mlsys.ml.data import fingerprint, load_inputs
from mlsys.ml.features import WEEK, SalesHistory, weekly_frame
from mlsys.ml.tracking import configure, drift_reference, load_run_config, log_forecasting_run

log = get_logger(__name__)


@dataclass
class TrainingResult:
    run_id: str
    version: int
    wape: float
    champion_wape: float | None
    promoted: bool


def champion_wape_on(
    weeks: list[pd.Timestamp], history: SalesHistory, prices, champion: Champion
) -> float:
    """The champion's config backtested on the same weeks as the candidate (a fair gate)."""
    champion_cfg = load_run_config(champion.run_id)
    frame = weekly_frame(history, prices, champion_cfg.features)
    scores, _, _ = backtest(frame, weeks, champion_cfg, show_progress=False)
    return scores["model"]["wape"]


def train(cfg: DictConfig, promote: bool = True) -> TrainingResult:
    """Backtest, fit on every complete week, register; then the gate unless told not to."""
    settings = configure()
    engine = get_engine()
    history, prices = load_inputs(engine, cfg.data.include_generated)
    frame = weekly_frame(history, prices, cfg.features)
    weeks = history.complete_weeks()[-cfg.evaluation.weeks :]
    scores, forecasts, _ = backtest(frame, weeks, cfg)

    rows = model.training_rows(frame, weeks[-1] + WEEK, cfg)
    booster = model.fit(rows, cfg)
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
        registered_model_name=settings.registered_model_name,
        reference=drift_reference(frame, forecasts),
    )
    store_forecasts(engine, run_id, forecasts)
    assert version is not None  # registered under a name, so it has a version
    if not promote:
        return TrainingResult(run_id, version, scores["model"]["wape"], None, False)
    return gate(version)


def gate(version: int | None = None) -> TrainingResult:
    """The promotion gate: `version` (default: the latest) becomes champion if its backtest
    WAPE beats the champion's config backtested on the same weeks, or ties it: the same
    config ties exactly, and the candidate was fitted on newer weeks (the weekly retraining,
    the retraining a drift calls for), so it replaces the champion's older fit."""
    import mlflow

    name = configure().registered_model_name
    client = mlflow.MlflowClient()
    if version is None:
        version = max(int(v.version) for v in client.search_model_versions(f"name = '{name}'"))
    candidate = client.get_model_version(name, str(version))
    run_id = run_of(candidate)
    run = client.get_run(run_id)
    wape = run.data.metrics[GATE_METRIC]
    first, last = (iso_week(w) for w in run.data.tags["evaluation_weeks"].split(".."))
    weeks = list(pd.date_range(first, last, freq="7D"))
    cfg = load_run_config(run_id)

    def champion_wape(champion: Champion) -> float:
        history, prices = load_inputs(get_engine(), cfg.data.include_generated, before=last + WEEK)
        scored = champion_wape_on(weeks, history, prices, champion)
        client.log_metric(run_id, CHAMPION_SAME_WEEKS_METRIC, scored)
        return scored

    verdict = champion_gate(name, version, GATE_METRIC, wape, champion_wape, ties_to_candidate=True)
    return TrainingResult(run_id, version, wape, verdict.reference, verdict.beats)
