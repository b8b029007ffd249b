"""The search ranker's drift check (mlsys.monitoring.ranker).

On generated activity (`batch generate`'s posts, likes and search logs, in memory): a
ranker trained on the searches before a day, its reference as training logs it, and the
week after that day checked. Unshifted, it calls for retraining at most once in 20 seeds;
with newest first the order most searches ask for from that day on (`--newest-first`),
always. Then end to
end: the shifted activity loaded, a champion trained by the real command on the searches
before the shift, the `drift ranker` job on the database, and the ranker-drift
CronWorkflow through the local runner, which retrains (registering a new version) because
the check calls for it.
"""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from functools import cache

import pandas as pd
import pytest
from sqlalchemy import select

import mlflow
from mlsys.aianimals.ranking import RANKER_EXPERIMENT, RANKER_MODEL_NAME
from mlsys.aianimals.ranking_data import ranking_data
from mlsys.aianimals.tables import RANKER_DATASET_MEASURE, ModelDriftResult
from mlsys.batch.dataset import read_master_data
from mlsys.batch.generate import NewestFirstShift, generate
from mlsys.common.tracking import configure_mlflow
from mlsys.monitoring.ranker import WINDOW_DAYS, compare, window
from mlsys.pipelines.run import run_workflow
from mlsys.search.train_ranker import drift_reference
from tests.helpers.moderation import IMAGES
from tests.helpers.paths import ROOT

# The day the ranker is trained up to and the shift starts: while posts still appear (the
# generator's last month has none, which moves the inputs by itself).
TRAINED_UNTIL = datetime(2021, 11, 15, tzinfo=UTC)
SHIFT = NewestFirstShift(TRAINED_UNTIL)
POSTS, SEARCHES = 10_000, 5_000  # `batch generate`'s defaults


@cache
def master():
    return read_master_data(ROOT / "dataset/aianimals")


def check(seed: int, shift: NewestFirstShift | None):
    """The week after TRAINED_UNTIL against the reference of a ranker trained before it."""
    activity = generate(master(), IMAGES, POSTS, SEARCHES, seed, newest_first=shift)
    breeds = master().subcategories.set_index("id")["name_ja"]
    posts = activity.animals.assign(breed_ja=activity.animals["animal_subcategory_id"].map(breeds))
    logs = activity.access_logs
    created = pd.to_datetime(logs["created_at"], utc=True)
    trained = ranking_data(posts.copy(), activity.likes, logs[created < TRAINED_UNTIL])
    end = TRAINED_UNTIL + timedelta(days=WINDOW_DAYS)
    since = ranking_data(posts.copy(), activity.likes, logs[created < end], min_searches=0)
    current = window(since, WINDOW_DAYS, end)
    inputs = compare(drift_reference(trained), current)
    assert inputs is not None and current.searches > 100
    moved = [c.column for c in inputs.columns if c.drifted]
    print(f"seed {seed} shift {shift is not None}: {current.searches} searches, "
          f"{len(current.shown)} results; drifted {inputs.share:.2f}: {moved}")  # fmt: skip
    return inputs


@pytest.mark.slow  # 20 generated activities: about 30 s
def test_unshifted_searches_call_for_retraining_at_most_once_in_20_seeds():
    flagged = [seed for seed in range(20) if check(seed, None).drifted]
    assert len(flagged) <= 1, flagged


@pytest.mark.slow
def test_newest_first_as_the_default_order_calls_for_retraining():
    for seed in range(20, 30):
        inputs = check(seed, SHIFT)
        assert inputs.drifted
        # The posts shown are younger and less seen than those the ranker learned from.
        for column in ("age_days", "log_impressions", "log_likes"):
            assert inputs.column(column).drifted, column


def cli(component: str, *args) -> str:
    done = subprocess.run([sys.executable, "-m", f"mlsys.{component}", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.slow  # generates and loads seed 20's activity (above), trains twice: ~2 min
def test_the_ranker_drift_workflow_retrains_when_newest_first_becomes_the_default(tmp_path):
    generated = tmp_path / "generated"
    cli("batch", "generate", "--output", generated, "--seed", 20, "--newest-first",
        "--shift-from", f"{SHIFT.since:%Y-%m-%d}")  # fmt: skip
    cli("batch", "initial-load", "--generated", generated)
    cli("search", "train-ranker", "--until", f"{TRAINED_UNTIL:%Y-%m-%d}",
        "--num-boost-round", 20)  # fmt: skip

    report = tmp_path / "drift.json"
    end = TRAINED_UNTIL + timedelta(days=WINDOW_DAYS)
    printed = cli("monitoring", "drift", "ranker", "--until", f"{end:%Y-%m-%d}",
                  "--output", report)  # fmt: skip
    print(printed)
    checked = json.loads(report.read_text())
    assert checked["drifted"] and checked["version"] == 1, printed
    assert checked["columns"]["age_days"]["drifted"]

    shipped = ROOT / "infrastructure" / "argo" / "ranker-drift.yaml"
    phase, rows = run_workflow(shipped, {}, runner="process", logs=tmp_path / "logs",
                               echo=lambda _: None)  # fmt: skip
    nodes = {row.step.removeprefix("ranker-drift."): row.phase for row in rows}
    for row in rows:
        print(f"{row.step}: {row.phase} in {row.seconds:.0f} s")
    assert phase == "Succeeded", nodes
    assert nodes == {"drift-check": "Succeeded", "retrain.features": "Succeeded",
                     "retrain.train-ranker": "Succeeded",
                     "retrain.promotion-gate": "Succeeded"}  # fmt: skip
    configure_mlflow(RANKER_EXPERIMENT)  # the local home's tracking, as the jobs'
    client = mlflow.MlflowClient()
    versions = {int(v.version) for v in client.search_model_versions(
        f"name = '{RANKER_MODEL_NAME}'")}  # fmt: skip
    assert versions == {1, 2}  # the retraining registered one

    from mlsys.aianimals.database import get_engine

    with get_engine().connect() as connection:
        results = pd.read_sql(select(ModelDriftResult), connection)
    dataset = results[results["measure"] == RANKER_DATASET_MEASURE]
    assert len(dataset) == 2 and dataset["drifted"].all()  # the job's window and the workflow's
    assert {"age_days", "animal_subcategory_id"} <= set(results["measure"])
    runs = mlflow.search_runs(filter_string="tags.job = 'drift'",
                              experiment_names=[RANKER_EXPERIMENT])  # fmt: skip
    assert len(runs) == 2 and runs["metrics.drifted"].min() == 1


def test_a_window_with_too_few_searches_decides_nothing():
    from mlsys.monitoring.ranker import MIN_SEARCHES, Window

    reference = pd.DataFrame({"log_likes": [0.0, 1.0, 2.0] * 500})
    few = Window(TRAINED_UNTIL, WINDOW_DAYS, MIN_SEARCHES - 1, reference.head(100))
    assert compare(reference, few) is None
    enough = Window(TRAINED_UNTIL, WINDOW_DAYS, MIN_SEARCHES, reference.head(100))
    assert compare(reference, enough) is not None


@pytest.mark.integration
@pytest.mark.slow  # generates, loads and trains on a small activity: about 1 min
def test_the_check_runs_as_its_own_role_on_postgresql(services_profile, monkeypatch, tmp_path):
    """As deployed: the activity loaded by the batch role, the ranker trained by the
    search role, checked as the monitoring role (which may read the ranking data and
    write only its results), the results written by COPY."""
    import os

    from mlsys.aianimals.database import get_engine
    from tests.helpers.cli import run_cli
    from tests.helpers.services import create_roles

    roles = create_roles(services_profile, ["batch", "search", "monitoring"])
    as_role = {name: os.environ | {"POSTGRES_USER": role} for name, role in roles.items()}
    run_cli("mlsys.batch", "migrate", env=as_role["owner"])
    generated = tmp_path / "generated"
    run_cli("mlsys.batch", "generate", "--output", str(generated), "--posts", "2000",
            "--searches", "2000", "--seed", "3", env=as_role["batch"])  # fmt: skip
    run_cli("mlsys.batch", "initial-load", "--generated", str(generated), env=as_role["batch"])
    run_cli("mlsys.search", "train-ranker", "--num-boost-round", "5", env=as_role["search"])

    checked = run_cli("mlsys.monitoring", "drift", "ranker", "--days", "28",
                      env=as_role["monitoring"])  # fmt: skip
    assert "version 1, " in checked.stdout and "retrain: " in checked.stdout
    monkeypatch.setenv("POSTGRES_USER", roles["monitoring"])
    with get_engine().connect() as connection:
        stored = connection.execute(select(ModelDriftResult.measure)).scalars().all()
    assert RANKER_DATASET_MEASURE in stored and "age_days" in stored
