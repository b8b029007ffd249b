"""MLflow basics: the local store keeps every artifact under MLSYS_HOME, never in the
current directory (a job's working directory is not where its models can be found)."""

import os

import mlflow
from mlsys.common.tracking import configure_mlflow


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
