"""The components' command lines, run exactly as the Makefile, the images and Argo do."""

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers.paths import ROOT


def local_env(home: Path) -> dict[str, str]:
    """This process's environment on the local profile with `home` as MLSYS_HOME: no
    MLFLOW_TRACKING_URI (MLflow exports it when a test configures tracking in-process)."""
    env = os.environ | {"MLSYS_PROFILE": "local", "MLSYS_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_cli(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m <component> <command> ...` in the repository root."""
    result = subprocess.run(
        [sys.executable, "-m", *args],
        capture_output=True,
        text=True,
        env=env or os.environ.copy(),
        cwd=ROOT,
        timeout=900,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed:\n{result.stdout}\n{result.stderr}")
    return result


def variables_read_by_components() -> set[str]:
    """Every environment variable some component reads: the settings classes, the MLflow
    server script, and MLflow's own switch. Deployment files may pass only these. (The
    settings are imported here, not at the top: every test process imports this module.)"""
    from mlsys.aianimals.settings import (
        AuthSettings,
        MailSettings,
        ModerationSettings,
        SearchSettings,
    )
    from mlsys.beverage.tracking import ForecastingSettings
    from mlsys.bi.access import BiSettings
    from mlsys.common.settings import (
        ElasticsearchSettings,
        MetricsSettings,
        MlflowSettings,
        PlatformSettings,
        PostgresSettings,
        RabbitmqSettings,
        RedisSettings,
        StorageSettings,
    )
    from mlsys.violation_detection.serve import ClassifierSettings

    every_settings = (
        PlatformSettings,
        PostgresSettings,
        MlflowSettings,
        ForecastingSettings,
        RedisSettings,
        RabbitmqSettings,
        ElasticsearchSettings,
        SearchSettings,
        StorageSettings,
        AuthSettings,
        BiSettings,
        ClassifierSettings,
        MailSettings,
        ModerationSettings,
        MetricsSettings,
    )
    names = set()
    for settings in every_settings:
        prefix = settings.model_config["env_prefix"]
        names |= {f"{prefix}{field}".upper() for field in settings.model_fields}
    names |= set(re.findall(r"\$\{(\w+)", (ROOT / "mlflow" / "serve.sh").read_text()))
    return names | {"MLFLOW_DISABLE_TELEMETRY"}
