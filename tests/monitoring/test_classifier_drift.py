"""The no-animal classifier's drift check (mlsys.monitoring.classifier).

On generated posts (`batch generate`'s posts, their photos judged by a trained classifier
as the server judges them): unshifted, it calls for retraining at most once in 20 seeds;
with the hidden share of posts without an animal doubled in the latest window, always.
Then end to end: generated posts loaded, a champion trained by the real command, its
judgements recorded as the detection consumer records them, the `drift classifier` job
on the database and the moderation-drift CronWorkflow through the local runner, which
retrains (registering a new version) because the check calls for it.
"""

import json
import subprocess
import sys
from datetime import timedelta
from functools import cache

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

import mlflow
from mlsys.aianimals.moderation import CLASSIFIER_MODEL_NAME
from mlsys.aianimals.tables import Animal, ModelDriftResult
from mlsys.batch.dataset import read_image_manifest, read_master_data
from mlsys.batch.generate import LAST_POST, NO_ANIMAL_SHARE, NoAnimalShift, generate_animals
from mlsys.monitoring.classifier import compare, rates
from mlsys.pipelines.run import run_workflow
from tests.helpers.cli import run_cli
from tests.helpers.moderation import IMAGES
from tests.helpers.paths import ROOT

# Posts spread over the generator's seven months: the latest 35 days hold about 4,900 and
# the 140 before about 19,700, what the Z-test needs to see a doubled share (with 28 and
# 112 days, 3,900 and 15,800 posts, it saw 19 shifts of 20 at p < 0.005).
POSTS = 30_000
DAYS, REFERENCE_DAYS = 35, 140
SHIPPED = "dataset/"  # a generated post's photo_key: this and the photo's file under IMAGES
SHIFT = NoAnimalShift(2 * NO_ANIMAL_SHARE, LAST_POST - timedelta(days=DAYS))


@cache
def classifier():
    """The classifier `train --components 16` trains (the same split, seed and threshold
    for 0.95 precision on validation), its validation rates, and the no-animal
    probability of every photo a post can show (what the server answers for it)."""
    from mlsys.aianimals.photos import decoded, load_photos, split
    from mlsys.violation_detection.evaluate import threshold_for_precision
    from mlsys.violation_detection.train import (
        ClassifierParams,
        no_animal_scores,
        train_classifier,
    )

    photos = load_photos(IMAGES)
    parts = split(photos.labels, 0)
    params = ClassifierParams(components=16)
    model = train_classifier(photos.images[parts.train], photos.labels[parts.train], params).model
    valid = no_animal_scores(model, photos.images[parts.validation])
    labels = photos.labels[parts.validation]
    threshold = threshold_for_precision(labels, valid, 0.95, 0.9)
    validation = {"probability": valid.tolist(), "no_animal": labels.astype(bool).tolist()}
    files = read_image_manifest(IMAGES)["file"]
    scores = no_animal_scores(model, np.stack([decoded(IMAGES / f) for f in files]))
    return threshold, rates(validation, threshold), dict(zip(SHIPPED + files, scores, strict=True))


def judged(seed: int, shift: NoAnimalShift | None) -> pd.DataFrame:
    """The generated posts of `seed` as the detection consumer records them."""
    threshold, _, scores = classifier()
    rng = np.random.default_rng(seed)
    posts = generate_animals(read_master_data(ROOT / "dataset/aianimals"),
                             read_image_manifest(IMAGES), POSTS, rng,
                             np.random.default_rng([seed, 1]), shift)  # fmt: skip
    probability = posts["photo_key"].map(scores).astype(float)
    created_at = pd.to_datetime(posts["created_at"], utc=True)
    return pd.DataFrame(
        {"created_at": created_at, "probability": probability,
         "is_violation": probability >= threshold}
    )  # fmt: skip


def check(seed: int, shift: NoAnimalShift | None):
    _, classifier_rates, _ = classifier()
    measures, reference_posts, current_posts = compare(
        judged(seed, shift), LAST_POST, DAYS, REFERENCE_DAYS
    )
    assert min(reference_posts, current_posts) > 4_500
    flagged, probability = measures
    change = classifier_rates.no_animal_change(flagged.reference, flagged.current)
    print(f"seed {seed} shift {shift is not None}: posts {current_posts}/{reference_posts}, "
          f"flagged {flagged.reference:.3f} -> {flagged.current:.3f} (p={flagged.score:.2g}), "
          f"no-animal share change {change:+.3f}, KS p={probability.score:.2g}")  # fmt: skip
    return any(m.drifted for m in measures), change


@pytest.mark.slow  # a classifier trained, 40 generated activities judged: about 2 min
def test_unshifted_posts_call_for_retraining_at_most_once_in_20_seeds():
    flagged = [seed for seed in range(20, 40) if check(seed, None)[0]]
    assert len(flagged) <= 1, flagged


@pytest.mark.slow
def test_a_doubled_share_of_posts_without_an_animal_calls_for_retraining():
    for seed in range(20, 30):
        drifted, change = check(seed, SHIFT)
        assert drifted
        assert 0.01 < change < 0.05  # the adjusted count: the share grew by 3 points


def cli(component: str, *args) -> str:
    done = subprocess.run([sys.executable, "-m", f"mlsys.{component}", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def record_judgements() -> int:
    """Every loaded post judged by the champion, recorded as the detection consumer
    records the server's answers (`detect.record`; the server, broker and consumer have
    their own tests): each distinct photo scored once. Returns the champion's version."""
    from mlsys.aianimals.database import get_engine
    from mlsys.aianimals.photos import decoded
    from mlsys.common.tracking import CHAMPION_VERSION
    from mlsys.violation_detection.detect import Judgement, Judgements, record
    from mlsys.violation_detection.tracking import configure_mlflow, load_version
    from mlsys.violation_detection.train import no_animal_scores

    configure_mlflow("aianimals_violation_detection")
    model, threshold = load_version(CHAMPION_VERSION)
    champion = mlflow.MlflowClient().get_model_version_by_alias(CLASSIFIER_MODEL_NAME, "champion")
    engine = get_engine()
    with engine.connect() as connection:
        posts = pd.read_sql(select(Animal.id, Animal.photo_key), connection)
    keys = posts["photo_key"].unique()
    photos = [decoded(IMAGES / key.removeprefix(SHIPPED)) for key in keys]
    scores = no_animal_scores(model, np.stack(photos))
    by_key = dict(zip(keys, scores.tolist(), strict=True))
    judgements = Judgements(
        f"{CLASSIFIER_MODEL_NAME}/{champion.version}", threshold,
        [Judgement(post, by_key[key], by_key[key] >= threshold)
         for post, key in zip(posts["id"], posts["photo_key"], strict=True)],
    )  # fmt: skip
    with engine.begin() as connection:
        record(connection, judgements)
    return int(champion.version)


@pytest.mark.slow  # generates, loads and judges 30,000 posts, trains three times: ~4 min
def test_the_moderation_drift_workflow_retrains_when_the_share_doubles(tmp_path):
    generated = tmp_path / "generated"
    cli("batch", "generate", "--output", generated, "--posts", POSTS, "--searches", 0,
        "--seed", 20, "--no-animal-share", SHIFT.share, "--shift-from",
        f"{SHIFT.since:%Y-%m-%d}")  # fmt: skip
    cli("batch", "initial-load", "--generated", generated)
    cli("violation_detection", "train", "--components", 16)
    version = record_judgements()

    report = tmp_path / "drift.json"
    printed = cli("monitoring", "drift", "classifier", "--days", DAYS, "--reference-days",
                  REFERENCE_DAYS, "--output", report)  # fmt: skip
    print(printed)
    checked = json.loads(report.read_text())
    assert checked["drifted"] and checked["measures"]["flagged_share"]["drifted"], printed
    assert 0.01 < checked["no_animal_change"] < 0.05  # it grew by 3 points

    shipped = ROOT / "infrastructure" / "argo" / "moderation-drift.yaml"
    parameters = {"photos": "60", "days": str(DAYS), "reference-days": str(REFERENCE_DAYS)}
    phase, rows = run_workflow(shipped, parameters, runner="process", logs=tmp_path / "logs",
                               echo=lambda _: None)  # fmt: skip
    nodes = {row.step.removeprefix("moderation-drift."): row.phase for row in rows}
    for row in rows:  # the figures docs/deployment.md gives
        print(f"{row.step}: {row.phase} in {row.seconds:.0f} s, peak "
              f"{(row.peak_bytes or 0) / 2**20:.0f} MiB")  # fmt: skip
    assert phase == "Succeeded", nodes
    assert nodes == {"drift-check": "Succeeded", "retrain": "Succeeded"}
    client = mlflow.MlflowClient()
    versions = {int(v.version) for v in client.search_model_versions(
        f"name = '{CLASSIFIER_MODEL_NAME}'")}  # fmt: skip
    assert versions == {version, version + 1}  # the retraining registered one

    from mlsys.aianimals.database import get_engine

    with get_engine().connect() as connection:
        results = pd.read_sql(select(ModelDriftResult), connection)
    assert set(results["measure"]) == {"flagged_share", "probability"}
    assert results.set_index("measure").loc["flagged_share", "drifted"]
    runs = mlflow.search_runs(filter_string="tags.job = 'drift'",
                              experiment_names=["aianimals_violation_detection"])  # fmt: skip
    assert len(runs) >= 1 and runs["metrics.drifted"].max() == 1


@pytest.mark.integration
@pytest.mark.slow  # trains a small classifier: about 1 min
def test_the_check_runs_as_its_own_role_on_postgresql(services_profile, monkeypatch, tmp_path):
    """As deployed: the posts loaded by the batch role, judged as the detection's role,
    checked as the monitoring role (which may read posts and judgements and write only
    its results), the results written by COPY."""
    import os

    from mlsys.aianimals.database import get_engine
    from tests.helpers.services import create_roles

    roles = create_roles(services_profile, ["batch", "violation_detection", "monitoring"])
    as_role = {name: os.environ | {"POSTGRES_USER": role} for name, role in roles.items()}
    run_cli("mlsys.batch", "migrate", env=as_role["owner"])
    generated = tmp_path / "generated"
    run_cli("mlsys.batch", "generate", "--output", str(generated), "--posts", "3000",
            "--searches", "0", "--seed", "3", env=as_role["batch"])  # fmt: skip
    run_cli("mlsys.batch", "initial-load", "--generated", str(generated), env=as_role["batch"])
    run_cli("mlsys.violation_detection", "train", "--limit", "160", "--components", "4",
            env=as_role["violation_detection"])  # fmt: skip
    monkeypatch.setenv("POSTGRES_USER", roles["violation_detection"])
    version = record_judgements()

    windows = ["--days", str(DAYS), "--reference-days", str(REFERENCE_DAYS)]
    checked = run_cli("mlsys.monitoring", "drift", "classifier", *windows,
                      env=as_role["monitoring"])  # fmt: skip
    assert f"version {version}, " in checked.stdout and "retrain: " in checked.stdout
    monkeypatch.setenv("POSTGRES_USER", roles["monitoring"])
    with get_engine().connect() as connection:
        stored = connection.execute(select(ModelDriftResult.measure)).scalars().all()
    assert sorted(stored) == ["flagged_share", "probability"]


def test_too_few_posts_in_either_window_decide_nothing():
    from mlsys.monitoring.classifier import MIN_POSTS, Rates

    end = pd.Timestamp("2021-12-31", tz="UTC")
    created = [end - pd.Timedelta(days=d) for d in np.linspace(0.1, 34.9, MIN_POSTS * 10)]
    judged = pd.DataFrame({"created_at": created, "probability": 0.5, "is_violation": False})
    assert compare(judged, end, 7, 28)[0]  # about 2 and 8 times MIN_POSTS
    measures, reference, current = compare(judged, end, 3, 28)
    assert measures == [] and current < MIN_POSTS <= reference
    assert compare(judged.iloc[:0], end)[1:] == (0, 0)
    assert np.isnan(Rates(0.1, 0.2).no_animal_change(0.1, 0.2))  # rates that cannot tell
