"""The drift reference a champion was logged with at training, which every check reads."""

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mlsys.common.tracking import CHAMPION, run_of

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion


def champion_reference(
    model_name: str, artifact: str, train_command: str
) -> tuple["ModelVersion", bytes]:
    """The champion of `model_name` (MLflow configured) and the content of the drift
    reference `artifact` logged with it. A version trained before drift checks has none:
    ValueError, naming `train_command` that trains one with it."""
    from mlflow.exceptions import MlflowException

    import mlflow

    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias(model_name, CHAMPION)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_of(champion), artifact, tmp)
        except (MlflowException, OSError) as error:
            raise ValueError(
                f"version {champion.version} has no drift reference ({artifact}): it was "
                f"trained before drift checks; train a new version (`{train_command}`)"
            ) from error
        return champion, Path(path).read_bytes()
