"""Every Deployment and Job of the rendered manifests that runs one of our images, started
from that image as Kubernetes would start it (mlsys.pipelines.kubelet), in the order
`make deploy_base` applies them: each server passes its readiness probe within the time
its probes allow, each Job completes, each consumer keeps running and does its work, and
the API answers the Android app's calls from its container.

What differs from the cluster, and why:
- the backing services are the Debian stand-ins of the official images (conftest);
- no Elasticsearch: the AIAnimals workloads search with the local engine, whose index is a
  file, so the API and the search-index consumer share one /tmp volume (AIANIMALS);
- the classifier server first serves a tiny classifier registered by the test; the shipped
  CronWorkflows then run through the local workflow runner (mlsys.pipelines), each step a
  pod from its image, on small data through their parameters.
"""

import subprocess
import time
import urllib.request
from pathlib import Path

import httpx
import pytest

from infrastructure.images import docker
from mlsys.pipelines.kubelet import workloads
from mlsys.pipelines.run import run_workflow
from tests.helpers.aianimals import android_app_sequence, search
from tests.helpers.http import login, sign_up
from tests.helpers.paths import ROOT

pytestmark = pytest.mark.container

AIANIMALS = "aianimals"
FORECASTING = "beverage-sales-forecasting"
# SEARCH_ENGINE: no Elasticsearch here (see the module).
AIANIMALS_OVERRIDES = {"SEARCH_ENGINE": "local"}
# Seconds a Job may take here (2 cores): generous, so a slow machine is not a failure.
JOB_SECONDS = 900


def psql(cluster, database: str, query: str) -> str:
    """A query as the superuser, in the PostgreSQL stand-in's container."""
    postgres = cluster.started[("data", "postgres")]
    result = subprocess.run(
        [docker(), "exec", postgres.name, "psql", "-U", "postgres", "-d", database, "-tAc", query],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


def shared_tmp(cluster) -> dict:
    """The /tmp volume of the API and the search-index consumer: the local engine's index."""
    return {"shared": {"tmp": cluster.volume("search-tmp", "1Gi")}}


def http(started, port: int) -> httpx.Client:
    return httpx.Client(base_url=f"http://{started.address()}:{port}", timeout=30)


def still_running(started, seconds: float = 8) -> None:
    time.sleep(seconds)
    assert started.running(), f"{started.pod.name}: {started.state()}\n{started.logs()}"


# --- data, MLflow, forecasting --------------------------------------------------------------


def test_postgres_stand_in_runs_the_init_script(cluster):
    cluster.ready("data", "postgres")
    databases = psql(cluster, "postgres", "SELECT string_agg(datname, ' ' ORDER BY datname) "
                     "FROM pg_database WHERE datname NOT LIKE 'template%'")  # fmt: skip
    assert databases.split() == ["aianimals", "beverage", "mlflow", "mlflow_auth", "postgres"]


def test_mlflow_is_ready(cluster):
    started = cluster.ready("mlflow", "mlflow")
    with http(started, 5000) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/api/2.0/mlflow/experiments/search?max_results=1").status_code == 401


def test_forecasting_jobs_complete(cluster):
    cluster.complete(FORECASTING, "beverage-migrate", JOB_SECONDS)
    registered = cluster.complete(FORECASTING, "initial-registration", JOB_SECONDS)
    days = psql(cluster, "beverage", "SELECT count(DISTINCT date) FROM item_sales")
    assert int(days) > 0, registered.logs()


def run_in_images(cluster, name: str, logs: Path, parameters: dict | None = None) -> str:
    """The shipped workflow NAME executed by the local runner (mlsys.pipelines) as Argo
    would, each step a pod of its namespace from the image built; its steps' logs."""
    lines: list[str] = []
    phase, rows = run_workflow(
        ROOT / "infrastructure" / "argo" / f"{name}.yaml", parameters or {}, runner="docker",
        logs=logs, manifests=cluster.manifests, network=cluster.network,
        images=(cluster.registry, cluster.tag), echo=lines.append,
    )  # fmt: skip
    output = "\n".join(path.read_text() for path in sorted(logs.glob("*")))
    assert phase == "Succeeded", "\n".join(lines) + "\n" + output[-6000:]
    assert all(row.peak_bytes for row in rows), rows  # the runner measured each step
    assert all(row.peak_bytes < row.limit_bytes for row in rows), rows
    return output


def test_the_forecasting_workflows_run_step_by_step_in_their_images(cluster, tmp_path):
    """The shipped register-next-week, forecasting and forecast-drift CronWorkflows: the
    week after the initial registration is registered, a model trained, gated and its
    predictions stored, then checked for drift (the monitoring image, its own role)."""
    weeks = "SELECT count(DISTINCT date_trunc('week', date)) FROM item_sales"
    predicted = "SELECT count(*) FROM weekly_sales_predictions"
    before = int(psql(cluster, "beverage", weeks)), int(psql(cluster, "beverage", predicted))
    for name in ("register-next-week", "forecasting", "forecast-drift"):
        run_in_images(cluster, name, tmp_path / name)
    after = int(psql(cluster, "beverage", weeks)), int(psql(cluster, "beverage", predicted))
    assert after[0] == before[0] + 1 and after[1] > before[1], (before, after)
    checked = "SELECT count(*) FROM drift_results WHERE measure = 'dataset'"
    assert int(psql(cluster, "beverage", checked)) == 1


def test_bi_is_ready_and_asks_for_a_login(cluster):
    started = cluster.ready(FORECASTING, "bi")
    with http(started, 8501) as client:
        assert client.get("/_stcore/health").status_code == 200


# --- AIAnimals ------------------------------------------------------------------------------


def test_aianimals_jobs_complete(cluster):
    cluster.ready(AIANIMALS, "rabbitmq")
    cluster.ready(AIANIMALS, "redis")
    cluster.complete(AIANIMALS, "aianimals-migrate", JOB_SECONDS, overrides=AIANIMALS_OVERRIDES)
    cluster.complete(AIANIMALS, "aianimals-initial-load", JOB_SECONDS,
                     overrides=AIANIMALS_OVERRIDES)  # fmt: skip
    assert int(psql(cluster, "aianimals", "SELECT count(*) FROM animals")) > 0


def mail_tmp(cluster) -> dict:
    """The account mailer's /tmp: MAIL_URL is file:///tmp/mail until `make secrets` is
    given an SMTP relay, so the sign-up links land there, where the test reads them."""
    return {"shared": {"tmp": cluster.volume("mail-tmp", "64Mi")}}


def test_consumers_keep_running(cluster):
    for name in ("outbox-relay", "ranking-features", "image-index"):
        cluster.start(AIANIMALS, name, overrides=AIANIMALS_OVERRIDES)
    cluster.start(AIANIMALS, "search-index", overrides=AIANIMALS_OVERRIDES, **shared_tmp(cluster))
    cluster.start(AIANIMALS, "account-mail", overrides=AIANIMALS_OVERRIDES, **mail_tmp(cluster))
    for name in ("outbox-relay", "search-index", "account-mail", "ranking-features", "image-index"):
        still_running(cluster.started[(AIANIMALS, name)], seconds=2)


def test_api_answers_the_android_app_from_its_container(cluster):
    started = cluster.ready(AIANIMALS, "api", overrides=AIANIMALS_OVERRIDES, **shared_tmp(cluster))
    with http(started, 8000) as api:
        # Outside development the seeded users' passwords are random: a new user signs up.
        user = {"handle_name": "container_test", "email_address": "container@example.com",
                "password": "a long password", "age": 30, "gender": 1}  # fmt: skip
        sign_up(api, user, cluster.volumes["mail-tmp"] / "mail")  # the mailed link, followed
        token = login(api, user["handle_name"], user["password"])
        # The initial load queued every post; the relay and the search-index consumer
        # index them into the file the API reads.
        deadline = time.monotonic() + 120
        while not search(api, token, {"phrases": ["ねこ"]}, limit=1)["results"]:
            assert time.monotonic() < deadline, cluster.started[(AIANIMALS, "search-index")].logs()
            time.sleep(2)
        _, found, _ = android_app_sequence(api, user["handle_name"], user["password"])
    stored = psql(cluster, "aianimals", "SELECT string_agg(action, ' ' ORDER BY action) "
                  f"FROM access_logs WHERE search_id = '{found['search_id']}'")  # fmt: skip
    assert stored == "like see_long select"


def test_ab_test_proxy_is_ready_and_forwards_to_the_api(cluster):
    started = cluster.ready(AIANIMALS, "ab-test-proxy")
    with http(started, 8080) as proxy:
        token = login(proxy, "container_test", "a long password")
        answer = proxy.post("/v0/animal/search", json={"phrases": ["いぬ"]}, headers=token)
        assert answer.status_code == 200, answer.text


def use_the_tracking_server(cluster, monkeypatch) -> None:
    """This test process as a client of the MLflow container, as the AIAnimals steps are."""
    mlflow = cluster.started[("mlflow", "mlflow")]
    monkeypatch.setenv("MLSYS_PROFILE", "services")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://{mlflow.address()}:5000")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    password = cluster.secret(AIANIMALS, "mlflow-credentials", "MLFLOW_TRACKING_PASSWORD")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)


def test_classifier_server_is_ready_once_a_champion_exists(cluster, monkeypatch):
    from tests.helpers.moderation import IMAGES, register_tiny_classifier

    use_the_tracking_server(cluster, monkeypatch)
    register_tiny_classifier(0.5)
    started = cluster.ready(AIANIMALS, "violation-classifier")
    token = cluster.secret(AIANIMALS, "classifier-credentials", "VIOLATION_DETECTION_TOKEN")
    with http(started, 8100) as client:
        photo = next((IMAGES / "animal").glob("*.png"))
        upload = ("photos", (photo.name, photo.read_bytes(), "image/png"))
        assert client.post("/v1/predict", files=[upload]).status_code == 401  # no token
        bearer = {"Authorization": f"Bearer {token}"}
        judged = client.post("/v1/predict", files=[upload], headers=bearer)
        assert judged.status_code == 200, judged.text


def test_detection_consumer_and_portal_run(cluster):
    cluster.start(AIANIMALS, "violation-detection", overrides=AIANIMALS_OVERRIDES)
    portal = cluster.ready(AIANIMALS, "review-portal", overrides=AIANIMALS_OVERRIDES)
    still_running(cluster.started[(AIANIMALS, "violation-detection")], seconds=2)
    with urllib.request.urlopen(f"http://{portal.address()}:8502/", timeout=10) as page:
        assert page.status == 200


# Small data through the workflows' parameters (their defaults are the production run).
AIANIMALS_WORKFLOWS = {
    "search-ranker": ("aianimals_search_ranker", {}),
    "similar-words": ("aianimals_similar_words", {}),
    "image-index": ("aianimals_image_embedding", {"epochs": "1", "photos": "200"}),
    "violation-retrain": ("aianimals_no_animal_violation", {"photos": "60"}),
}


@pytest.mark.parametrize("name", AIANIMALS_WORKFLOWS)
def test_the_aianimals_workflows_register_a_version_and_gate_it(cluster, name, tmp_path,
                                                                monkeypatch):  # fmt: skip
    """Each AIAnimals CronWorkflow, run in its images on the loaded data, registers a new
    version of its model, and the champion alias moves to it exactly when its gate says so
    (the classifier's champion is the tiny one registered above; the others have none
    before: a first similar-words version must still beat searching without any)."""
    from mlflow.exceptions import MlflowException

    from mlflow import MlflowClient

    use_the_tracking_server(cluster, monkeypatch)
    model, parameters = AIANIMALS_WORKFLOWS[name]
    client = MlflowClient()

    def versions() -> list[int]:
        found = client.search_model_versions(f"name = '{model}'")
        return sorted(int(version.version) for version in found)

    def champion() -> int | None:
        try:
            return int(client.get_model_version_by_alias(model, "champion").version)
        except MlflowException:  # no alias yet
            return None

    before, champion_before = versions(), champion()
    logs = run_in_images(cluster, name, tmp_path, parameters)
    after = versions()
    [new] = sorted(set(after) - set(before))
    promoted = "not promoted" not in logs
    assert champion() == (new if promoted else champion_before), logs[-3000:]


def test_make_moderator_grants_the_role_from_the_relays_container(cluster):
    """`make moderator HANDLE=...` execs grant-role in the outbox relay (the batch image,
    its PostgreSQL role): the user the Android test registered becomes a moderator."""
    relay = cluster.started[(AIANIMALS, "outbox-relay")]
    granted = subprocess.run(
        [docker(), "exec", relay.name, "python", "-m", "mlsys.batch", "grant-role",
         "container_test", "moderator"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert granted.returncode == 0, granted.stdout + granted.stderr
    role = psql(cluster, "aianimals", "SELECT role FROM users WHERE handle_name = 'container_test'")
    assert role == "moderator"


def test_every_workload_of_our_images_was_started(cluster):
    """Nothing that uses one of our images was left out of the tests above."""
    ours = {
        (namespace, pod.name)
        for namespace, documents in cluster.documents.items()
        for pod in workloads(documents)
        if "/mlsys-" in pod.image and "elasticsearch" not in pod.image
    }
    assert ours <= set(cluster.started), sorted(ours - set(cluster.started))
