"""The weekly schedule simulated locally with the very workflows the deployment runs
(issue 11, item 5; issue 31): the image's initial registration, then each week the
register-next-week CronWorkflow and the forecasting DAG, executed by the local workflow
runner's process runner (mlsys.pipelines: each step's command as a local process, the
trained version handed to the gate as the DAG's parameter). Each week registers a new week
of sales and produces predictions for the week after it, the same rows as the CLI run by
hand week after week (issue 31)."""

import re
import sqlite3
import tomllib
from pathlib import Path

import pytest

from mlsys.pipelines.run import run_workflow
from tests.helpers.cli import local_env, run_cli
from tests.helpers.paths import ROOT

pytestmark = pytest.mark.slow
ARGO = ROOT / "infrastructure" / "argo"


def run(name: str, logs: Path) -> dict[str, str]:
    """The workflow run here; each step's log (its last attempt) by step name."""
    phase, rows = run_workflow(ARGO / f"{name}.yaml", {}, runner="process", logs=logs,
                               echo=lambda _: None)  # fmt: skip
    attempts = {row.step: row.attempt for row in rows}
    output = {step: (logs / f"{step}.{n}.log").read_text() for step, n in attempts.items()}
    assert phase == "Succeeded", output
    return output


def tables(home: Path) -> dict[str, list[tuple]]:
    """The registered sales and the stored predictions (without the run ids and times)."""
    with sqlite3.connect(home / "beverage.db") as db:
        return {
            "item_sales": db.execute("SELECT * FROM item_sales ORDER BY 1, 2, 3").fetchall(),
            "predictions": db.execute(
                "SELECT week_start, store_id, item_id, model_version, model_name, prediction "
                "FROM weekly_sales_predictions ORDER BY 1, 2, 3, 4"
            ).fetchall(),
        }


def by_hand(initial: list[str], home: Path, weeks: int) -> None:
    """What a user types each week instead of the workflows."""
    env = local_env(home)
    run_cli(*initial[2:], env=env)
    sales = str(ROOT / "dataset/beverage/item_sale_records_202107_202112.csv")
    for _ in range(weeks):
        run_cli("mlsys.data_registration", "register", "--sales", sales, "--latest-week-only",
                env=env)  # fmt: skip
        run_cli("mlsys.ml", "validate", env=env)
        run_cli("mlsys.ml", "train", env=env)
        run_cli("mlsys.ml", "predict", env=env)


def test_each_week_registers_the_next_week_and_predicts_the_one_after(tmp_path, monkeypatch,
                                                                       local_home):  # fmt: skip
    monkeypatch.chdir(ROOT)  # the image's /app, for the process runner
    images = tomllib.loads((ROOT / "infrastructure" / "images.toml").read_text())
    initial = [a.replace("/app/", f"{ROOT}/") for a in images["data_registration"]["command"]]
    assert initial[:3] == ["python", "-m", "mlsys.data_registration"]
    assert "written: " in run_cli(*initial[2:]).stdout
    predicted_weeks = []
    for week in range(2):  # weeks 49 and 50: the second judged against the first's champion
        registered = run("register-next-week", tmp_path / f"register-{week}")
        assert registered["register-next-week"].rstrip().endswith("written: 700"), registered
        forecast = run("forecasting", tmp_path / f"forecast-{week}")
        found = re.search(r"week (\d{4}-\d{2}): 100 predictions by version (\d+)",
                          forecast["forecasting.predict"])  # fmt: skip
        assert found, forecast
        # The gate judged the version this run trained (the DAG's parameter), not another.
        trained = re.search(r"registered version (\d+)", forecast["forecasting.backtest-train"])
        assert trained, forecast
        verdict = forecast["forecasting.promotion-gate"].rstrip().splitlines()[-1]
        assert verdict.startswith(f"version {trained.group(1)} "), verdict
        predicted_weeks.append(found.group(1))
    assert predicted_weeks == ["2021-50", "2021-51"]
    by_hand(initial, tmp_path / "by-hand", weeks=2)
    workflows, hand = tables(local_home), tables(tmp_path / "by-hand")
    assert len(workflows["predictions"]) == 200
    assert workflows == hand
