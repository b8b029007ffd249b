"""The forecaster's drift check (mlsys.monitoring.forecaster).

On generated histories, through the training and prediction code and the check's verdict:
unshifted, it calls for retraining at most once in 20 seeds; with a shift in the latest
weeks (prices, the level of sales, a store closing), always. Then end to end on a generated
history with a level shift: the `drift` job on the database, its results in the database
and MLflow, and the forecast-drift CronWorkflow through the local runner, which retrains
(registering a new version) only when the check calls for it.
"""

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from sqlalchemy import select

import mlflow
from mlsys.beverage.database import get_engine
from mlsys.beverage.tables import DriftResult, WeeklyForecastFeature
from mlsys.common.tracking import CHAMPION
from mlsys.data_registration.generate import GenerationSpec, Shift, generate
from mlsys.ml import model
from mlsys.ml.backtest import backtest
from mlsys.ml.features import MONITORED, WEEK, SalesHistory, weekly_frame
from mlsys.ml.tracking import configure, drift_reference
from mlsys.monitoring.forecaster import (
    REALISED_WAPE_FACTOR,
    ForecasterDrift,
    RealisedError,
    input_drift,
    wape,
)
from mlsys.pipelines.run import run_workflow
from tests.helpers.paths import ROOT

SHIFT_FROM = pd.Timestamp("2020-09-07")  # a Monday: the first forecast week after training
EVALUATION_WEEKS = 8  # the config's: the reference's weeks


def config():
    with initialize_config_module("mlsys.ml.conf", version_base=None):
        return compose("config")


def generated(tmp_path: Path, seed: int, shift: Shift) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Daily sales from 2019-06-03 to 2020-09-13 (one week past SHIFT_FROM) and prices."""
    spec = GenerationSpec(
        start=date(2019, 6, 3),
        end=date(2020, 9, 13),
        seed=seed,
        shift=shift,
        shift_from=None if shift == Shift.none else SHIFT_FROM.date(),
    )
    folder = tmp_path / f"{shift}-{seed}"
    path = generate(spec, folder, real_master_dir=None)
    stores = pd.read_csv(folder / "stores.csv").rename(columns={"name": "store"})
    daily = pd.read_csv(path, parse_dates=["date"]).merge(stores[["store", "region"]], on="store")
    for column in ("store", "item", "region"):
        daily[column] = daily[column].astype("category")
    prices = pd.read_csv(folder / "item_prices.csv", parse_dates=["applied_from", "applied_to"])
    return daily, prices.rename(columns={"item_name": "item"})


def check(tmp_path: Path, seed: int, shift: Shift) -> ForecasterDrift:
    """What the weekly jobs would do: train through the week before SHIFT_FROM (logging the
    reference), forecast SHIFT_FROM's week, register its sales, forecast the week after;
    then the check's verdict on that week's inputs and on the first week's realised error."""
    cfg = config()
    daily, prices = generated(tmp_path, seed, shift)
    history = SalesHistory.from_daily(daily)
    known = history.before(SHIFT_FROM)
    frame = weekly_frame(known, prices, cfg.features, target_weeks=[SHIFT_FROM])
    weeks = known.complete_weeks()[-EVALUATION_WEEKS:]
    scores, forecasts, _ = backtest(frame, weeks, cfg, show_progress=False)
    reference = drift_reference(frame, forecasts)
    booster = model.fit(model.training_rows(frame, SHIFT_FROM, cfg), cfg)

    first = frame[(frame["week_start"] == SHIFT_FROM) & frame["base"].notna()]
    actual = history.series_weeks.set_index(["store", "item", "week_start"])["week_sales"]
    keys = pd.MultiIndex.from_frame(first[["store", "item", "week_start"]])
    realised = wape(
        pd.Series(actual.reindex(keys).fillna(0).to_numpy(float)),
        pd.Series(model.predict(booster, first)),
    )

    later = SHIFT_FROM + WEEK
    frame = weekly_frame(history.before(later), prices, cfg.features, target_weeks=[later])
    rows = frame[(frame["week_start"] == later) & frame["base"].notna()]
    current = rows[MONITORED].astype(float).assign(prediction=model.predict(booster, rows))
    threshold = scores["model"]["wape"] * REALISED_WAPE_FACTOR
    return ForecasterDrift(
        "forecaster",
        1,
        later.date(),
        input_drift(reference, current),
        [RealisedError(SHIFT_FROM.date(), 1, realised, threshold)],
    )


def summary(result: ForecasterDrift) -> str:
    realised = result.realised[0]
    columns = " ".join(f"{c.column}={c.score:.2f}" for c in result.inputs.columns)
    return (f"inputs {result.inputs.share:.2f} ({columns}); realised WAPE {realised.wape:.3f} "
            f"= {realised.wape / realised.threshold * REALISED_WAPE_FACTOR:.2f} x backtest; "
            f"drifted {result.drifted}")  # fmt: skip


@pytest.mark.slow  # 20 histories trained and forecast: about 50 s
def test_unshifted_histories_call_for_retraining_at_most_once_in_20_seeds(tmp_path):
    """Seeds 20 to 39: the thresholds were set looking at seeds 0 to 19, not these."""
    flagged = []
    for seed in range(20, 40):
        result = check(tmp_path, seed, Shift.none)
        print(f"seed {seed}: {summary(result)}")
        if result.drifted:
            flagged.append(seed)
    assert len(flagged) <= 1, flagged


@pytest.mark.slow
@pytest.mark.parametrize("shift", [Shift.price, Shift.level, Shift.store])
def test_a_shift_in_the_latest_weeks_calls_for_retraining(tmp_path, shift):
    for seed in (20, 21, 22):
        result = check(tmp_path, seed, shift)
        print(f"{shift} seed {seed}: {summary(result)}")
        assert result.drifted


def cli(component: str, *args) -> str:
    done = subprocess.run([sys.executable, "-m", f"mlsys.{component}", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def run_drift_workflow(logs: Path) -> tuple[str, dict[str, str]]:
    """The shipped forecast-drift CronWorkflow through the local runner, on generated
    history: its phase and the phase of each step that ran (a skipped one has none)."""
    shipped = ROOT / "infrastructure" / "argo" / "forecast-drift.yaml"
    phase, rows = run_workflow(shipped, {"generated": "true"}, runner="process", logs=logs,
                               echo=lambda _: None)  # fmt: skip
    return phase, {row.step.removeprefix("forecast-drift."): row.phase for row in rows}


@pytest.mark.slow  # trains three times: about 90 s
def test_the_drift_workflow_retrains_only_when_the_check_calls_for_it(tmp_path):
    """Generated history through the week before SHIFT_FROM, a champion, its forecast of
    SHIFT_FROM's week: no drift, and the workflow's retraining is skipped. Then that week
    registered, every sale 40 % lower (the level shift): the realised error calls for
    retraining, and the workflow trains, registers and promotes a new version. The
    results are in the database and in MLflow."""
    spec = GenerationSpec(start=date(2019, 6, 3), end=date(2020, 9, 13), seed=20,
                          shift=Shift.level, shift_from=SHIFT_FROM.date())  # fmt: skip
    sales = generate(spec, tmp_path / "generated", real_master_dir=None)
    cli("data_registration", "register", "--master-dir", tmp_path / "generated", "--sales",
        sales, "--until-week", "2020-36")  # fmt: skip
    cli("ml", "train", "data.include_generated=true")
    cli("ml", "predict")
    phase, nodes = run_drift_workflow(tmp_path / "calm")
    assert phase == "Succeeded", nodes
    assert nodes == {"drift-check": "Succeeded"}  # the retraining skipped

    cli("data_registration", "register", "--sales", sales, "--latest-week-only")
    cli("ml", "predict")
    report = tmp_path / "drift.json"
    printed = cli("monitoring", "drift", "forecaster", "--output", report)
    print(printed)
    checked = json.loads(report.read_text())
    assert checked["drifted"] and checked["realised"]["week"] == "2020-09-07", printed
    assert checked["realised"]["wape"] > checked["realised"]["threshold"]

    phase, nodes = run_drift_workflow(tmp_path / "drifted")
    assert phase == "Succeeded", nodes
    retrain = ["validate-data", "backtest-train", "promotion-gate", "predict"]
    assert nodes == dict.fromkeys(["drift-check", *(f"retrain.{s}" for s in retrain)], "Succeeded")
    name = configure().registered_model_name
    client = mlflow.MlflowClient()
    versions = {int(v.version) for v in client.search_model_versions(f"name = '{name}'")}
    assert versions == {1, 2}  # the retraining registered one, and the gate promoted it:
    assert int(client.get_model_version_by_alias(name, CHAMPION).version) == 2  # a tie: newer

    with get_engine().connect() as connection:
        results = pd.read_sql(select(DriftResult), connection)
        features = pd.read_sql(select(WeeklyForecastFeature.week_start).distinct(), connection)
    realised = results[results["measure"] == "realised_wape"].set_index("week_start")
    assert bool(realised.loc[SHIFT_FROM.date(), "drifted"])
    assert {"dataset", *MONITORED, "prediction"} <= set(results["measure"])
    assert len(features) == 2  # the weeks of SHIFT_FROM and after
    runs = mlflow.search_runs(filter_string="tags.job = 'drift'", experiment_names=[
        configure().experiment_name])  # fmt: skip
    assert len(runs) == 3 and runs["metrics.drifted"].max() == 1
