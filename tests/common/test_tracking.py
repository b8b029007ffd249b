"""MLflow basics: the local store keeps every artifact under MLSYS_HOME, never in the
current directory (a job's working directory is not where its models can be found), and
is made once however many processes look at it first."""

import os
import subprocess
import sys

import pytest

import mlflow
from mlsys.common.tracking import CHAMPION_VERSION, configure_mlflow, model_uri


def test_local_experiments_keep_artifacts_under_the_home(local_home, tmp_path, monkeypatch):
    elsewhere = tmp_path / "working-directory"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = configure_mlflow("an_experiment")
    assert uri == f"sqlite:///{(local_home / 'mlflow.db').resolve()}"
    experiment = mlflow.get_experiment_by_name("an_experiment")
    assert experiment.artifact_location == (local_home / "mlartifacts").resolve().as_uri()
    with mlflow.start_run():
        mlflow.log_text("hello", "note.txt")
    assert list(elsewhere.iterdir()) == []
    assert list((local_home / "mlartifacts").rglob("note.txt"))
    # MLflow exported the URI for subprocesses; a second call must still see the local store.
    assert os.environ["MLFLOW_TRACKING_URI"] == uri
    configure_mlflow("another_experiment")
    another = mlflow.get_experiment_by_name("another_experiment")
    assert another.artifact_location == (local_home / "mlartifacts").resolve().as_uri()


@pytest.mark.slow  # three Pythons importing MLflow at once: 13 s
def test_processes_making_the_local_store_at_once_all_find_it_made(tmp_path):
    """A job making the store while a server first looks at it once collided in SQLite
    (CI: "table _alembic_tmp_model_version_tags already exists"): they take turns."""
    from tests.helpers.cli import local_env

    env = local_env(tmp_path / "home") | {"TMPDIR": str(tmp_path)}
    code = (
        "from mlsys.common.tracking import configure_tracking\n"
        "import mlflow\n"
        "configure_tracking()\n"
        "print(len(mlflow.MlflowClient().search_registered_models()))"
    )
    makers = [
        subprocess.Popen([sys.executable, "-c", code], env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(3)
    ]  # fmt: skip
    for maker in makers:
        out, err = maker.communicate(timeout=120)
        assert maker.returncode == 0, err
        assert out.strip() == "0"
    assert (tmp_path / "home" / "mlflow.db").exists()


def test_a_servers_champion_follows_the_alias_and_survives_a_failed_reload(local_home):
    """ChampionWatch: nothing before a champion, each new version loaded once, the one
    served kept when loading the next fails, nothing once no version is the champion; and
    each change of what is served announced once (what was cached with it is stale)."""
    from mlsys.common.metrics import SERVED_MODELS
    from mlsys.common.tracking import CHAMPION, ChampionWatch

    def served(name: str) -> float | None:
        """What a scrape reads (the collector alone: the default registry may also hold a
        collector that reads another test's database)."""
        samples = [s for family in SERVED_MODELS.collect() for s in family.samples]
        values = [s.value for s in samples if s.name == name and s.labels["model"] == "a_model"]
        return values[0] if values else None

    loads: list[int] = []

    def load(version: int) -> str:
        loads.append(version)
        if version == 3:
            raise OSError("a broken artifact")
        return f"model {version}"

    changes: list[object] = []
    watch = ChampionWatch("a_model", load, refresh_seconds=30, what="model",
                          on_change=lambda: changes.append(watch.loaded))  # fmt: skip
    watch.refresh()
    assert (watch.loaded, watch.problem) == (None, "no champion model is registered")
    configure_mlflow("an_experiment")
    client = mlflow.MlflowClient()
    client.create_registered_model("a_model")
    for _ in range(3):
        with mlflow.start_run() as run:
            mlflow.log_text("weights", "model/weights.txt")
        client.create_model_version("a_model", f"runs:/{run.info.run_id}/model", run.info.run_id)
    for version, expected in ((1, "model 1"), (1, "model 1"), (2, "model 2"), (3, "model 2")):
        client.set_registered_model_alias("a_model", CHAMPION, str(version))
        watch.refresh()
        assert watch.loaded == expected
        # What /metrics reports: the version served and when it was registered.
        assert served("model_served_version") == int(expected[-1])
        created = client.get_model_version("a_model", expected[-1]).creation_timestamp
        assert served("model_served_registered_timestamp_seconds") == created / 1000
    assert loads == [1, 2, 3]  # version 1 loaded once; 3 tried, 2 still served
    assert changes == ["model 1", "model 2"]  # after each is served; not for the failure
    client.delete_registered_model_alias("a_model", CHAMPION)
    watch.refresh()
    assert (watch.loaded, watch.problem) == (None, "no champion model is registered")
    watch.refresh()
    assert changes == ["model 1", "model 2", None]  # none served any more: once
    assert served("model_served_version") == 0
    assert served("model_served_registered_timestamp_seconds") is None


def test_models_are_addressed_by_version_number_or_alias_one_way():
    assert model_uri("ranker", 3) == model_uri("ranker", "3") == "models:/ranker/3"
    assert model_uri("ranker", CHAMPION_VERSION) == "models:/ranker@champion"


def test_the_champion_gate_scores_the_champion_on_the_candidates_data_and_records_why(
    local_home,
):
    """The one gate: the first version must beat the floor when there is one; a later one
    the champion as `score_champion` scores it now (not the figure logged with it); the
    champion judged again is left alone; every verdict is on the candidate version's tags."""
    from mlsys.common.tracking import champion_gate, current_champion

    configure_mlflow("an_experiment")
    client = mlflow.MlflowClient()
    client.create_registered_model("gated")
    for _ in range(4):
        with mlflow.start_run() as run:
            mlflow.log_metric("test.auc", 0.5)
        client.create_model_version("gated", f"runs:/{run.info.run_id}/model", run.info.run_id)
    scored: list[int] = []

    def rescore(champion) -> float:
        scored.append(champion.version)
        return {1: 0.80, 2: 0.90}[champion.version]

    def gate(version: int, candidate: float, floor: float | None = None):
        return champion_gate("gated", version, "test.auc", candidate, rescore,
                             higher_is_better=True, floor=floor)  # fmt: skip

    assert not gate(1, 0.70, floor=0.75).beats  # below the baseline: no champion yet
    assert current_champion("gated", "test.auc") is None
    assert gate(1, 0.80, floor=0.75).beats and scored == []
    first = gate(2, 0.85)  # the champion (1) scores 0.80 now, though it logged 0.5
    assert (first.beats, first.reference, first.champion_version) == (True, 0.80, 1)
    kept = gate(3, 0.85)  # version 2, the champion now, scores 0.90 on this data
    assert (kept.beats, kept.reference, kept.champion_version) == (False, 0.90, 2)
    assert gate(2, 0.85).already_champion and scored == [1, 2]  # not scored against itself
    assert current_champion("gated", "test.auc").version == 2
    tags = client.get_model_version("gated", "3").tags
    assert tags["gate.verdict"] == "not promoted" and tags["gate.metric"] == "test.auc"
    assert (tags["gate.candidate"], tags["gate.reference"], tags["gate.champion_version"]) == (
        "0.85", "0.9", "2")  # fmt: skip
    assert client.get_model_version("gated", "2").tags["gate.verdict"] == "promoted"  # kept
    assert not gate(3, 0.90).beats  # a tie keeps the champion...
    tied = champion_gate("gated", 4, "test.auc", 0.90, rescore, higher_is_better=True,
                         ties_to_candidate=True)  # fmt: skip
    assert tied.beats and current_champion("gated", "test.auc").version == 4  # ...unless told
