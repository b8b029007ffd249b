"""The whole forecasting flow in the services profile: PostgreSQL on localhost and a real
MLflow tracking server (PostgreSQL backend store, proxied artifacts) started by the test."""

import base64
import json
import os
from datetime import date

import pytest
from sqlalchemy import func, select

import mlflow
from mlsys.beverage.database import get_engine
from mlsys.beverage.tables import DriftResult, ItemSale, WeeklySalesPrediction
from tests.helpers.cli import run_cli
from tests.helpers.paths import REAL, REAL_SALES
from tests.helpers.services import MLFLOW_ADMIN, create_roles

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_register_backtest_train_predict_against_services(
    services_profile, mlflow_server, monkeypatch, tmp_path
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    for name, value in MLFLOW_ADMIN.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", f"it_{services_profile}")
    monkeypatch.setenv("MLFLOW_REGISTERED_MODEL_NAME", f"it_{services_profile}")
    assert os.environ["MLSYS_PROFILE"] == "services"
    # Each component as its own role, with only its privileges (as deployed).
    roles = create_roles(services_profile, ["data_registration", "ml", "monitoring", "bi"])
    run_cli(
        "mlsys.data_registration", "migrate", env=os.environ | {"POSTGRES_USER": roles["owner"]}
    )
    env = os.environ | {"POSTGRES_USER": roles["data_registration"]}
    for _ in range(2):  # registering twice is idempotent on PostgreSQL too
        run_cli(
            "mlsys.data_registration",
            "register",
            "--master-dir",
            str(REAL),
            "--sales",
            str(REAL_SALES),
            env=env,
        )
    with get_engine().connect() as connection:
        assert connection.execute(select(func.count()).select_from(ItemSale)).scalar() == 18_000

    env = os.environ | {"POSTGRES_USER": roles["ml"]}
    output = tmp_path / "backtest.json"
    run_cli(
        "mlsys.ml",
        "backtest",
        "--from",
        "2021-48",
        "--to",
        "2021-51",
        "--output",
        str(output),
        env=env,
    )
    assert json.loads(output.read_text())["model"]["wape"] > 0

    first = run_cli("mlsys.ml", "train", "evaluation.weeks=3", env=env)
    assert "registered version 1" in first.stdout and "promoted to champion" in first.stdout
    weaker = ["evaluation.weeks=3", "features.share_window_weeks=1", "features.dow_window_weeks=1"]
    second = run_cli("mlsys.ml", "train", *weaker, env=env)
    assert "registered version 2" in second.stdout and "not promoted" in second.stdout

    predicted = run_cli("mlsys.ml", "predict", env=env)
    assert "week 2022-01: 100 predictions by version 1" in predicted.stdout
    with get_engine().connect() as connection:
        rows = connection.execute(
            select(
                WeeklySalesPrediction.model_version, WeeklySalesPrediction.run_id, func.count()
            ).group_by(WeeklySalesPrediction.model_version, WeeklySalesPrediction.run_id)
        ).all()
    client = mlflow.MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    champion = client.get_model_version_by_alias(f"it_{services_profile}", "champion")
    assert rows == [(1, champion.run_id, 100)]
    # the model's artifacts went through the server's artifact proxy
    assert client.get_run(champion.run_id).info.artifact_uri.startswith("mlflow-artifacts:")

    # The drift check as its own role: the reference through the proxy, results by COPY.
    env = os.environ | {"POSTGRES_USER": roles["monitoring"]}
    checked = run_cli("mlsys.monitoring", "drift", "forecaster", env=env)
    assert "version 1, week of 2022-01-03" in checked.stdout, checked.stdout
    with get_engine().connect() as connection:
        measures = connection.execute(select(DriftResult.measure, DriftResult.week_start)).all()
    assert ("dataset", date(2022, 1, 3)) in measures and len(measures) == 7  # 6 columns


@pytest.mark.integration
@pytest.mark.parametrize(
    ("host", "answered"),
    [
        ("evil.example.com", False),  # a rebinding page's own name
        ("10.1.2.3:5000", True),  # the kubelet's probe names the pod's IP
        ("mlflow.mlflow.svc.cluster.local:5000", True),
        ("mlflow:5000", True),
        ("localhost:5000", True),
    ],
)
def test_the_tracking_server_answers_only_its_own_host_names(mlflow_server, host, answered):
    """Issue 10, item 14: MLflow ran with --allowed-hosts '*'."""
    import urllib.error
    import urllib.request

    url = f"{mlflow_server}/api/2.0/mlflow/experiments/search?max_results=1"
    request = urllib.request.Request(url, headers={"Host": host, **ADMIN_LOGIN})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    assert (status == 200) is answered, status


ADMIN_LOGIN = {
    "Authorization": "Basic "
    + base64.b64encode(
        f"{MLFLOW_ADMIN['MLFLOW_TRACKING_USERNAME']}:{MLFLOW_ADMIN['MLFLOW_TRACKING_PASSWORD']}".encode()
    ).decode()
}


@pytest.mark.integration
@pytest.mark.parametrize(
    ("path", "login", "expected"),
    [
        ("/health", {}, 200),  # the probes need no user
        ("/api/2.0/mlflow/experiments/search?max_results=1", {}, 401),
        ("/api/2.0/mlflow/experiments/search?max_results=1", {"Authorization": "Basic YTpi"}, 401),
        ("/api/2.0/mlflow/experiments/search?max_results=1", ADMIN_LOGIN, 200),
        ("/api/2.0/mlflow-artifacts/artifacts", {}, 401),  # the proxied artifacts too
        ("/", {}, 401),  # the UI
    ],
)
def test_the_tracking_server_answers_only_its_users(mlflow_server, path, login, expected):
    """Issue 10, item 14: MLflow had no authentication."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{mlflow_server}{path}", headers=login)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    assert status == expected
