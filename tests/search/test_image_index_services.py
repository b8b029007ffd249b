"""The similar-image index in the services profile, on this machine's PostgreSQL, Redis and
RabbitMQ, each component as its own PostgreSQL role and process, as deployed: the job
(`build-image-index`, role search) embeds every post, the relay publishes new posts, the
image-index consumer (role search) embeds them, and the API (role api) finds them.

A post made through the API is similar-searchable within seconds (the goal is 5: the
figure is printed); a poison message (no such post, no post named) is dead-lettered while
the consumer goes on (a photo too small to embed never gets past the API:
tests/api/test_similar_images.py stores one directly). The embedding is tiny: this tests
the path, `build-image-index` measures the model (tests/search/test_image_embedding.py,
README)."""

import os
import time
from pathlib import Path

import pytest

from mlsys.aianimals.messages import Queue
from tests.helpers.aianimals import (
    dead_letters,
    post_animal,
    publish,
    services_deployment,
    spawn,
    wait_until,
)
from tests.helpers.cli import run_cli
from tests.helpers.http import login

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory, aianimals_generated):
    from mlflow import MlflowClient
    from mlsys.api import similar
    from mlsys.common.tracking import configure_tracking

    home = tmp_path_factory.mktemp("similar-services") / "mlsys-home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(similar, "REFRESH_SECONDS", 0.5)  # the new champion, at once
        # The local MLflow store made before the API polls it: a job creating it while the
        # API's first look migrates it too collides in SQLite (seen in CI).
        patch.setenv("MLSYS_HOME", str(home))
        configure_tracking()
        MlflowClient().search_experiments()
        with services_deployment(home, aianimals_generated) as api:
            batch_role = os.environ | {  # the commands' environment: role batch
                "RABBITMQ_RETRY_BASE_SECONDS": "0.2",
                "MLFLOW_DISABLE_TELEMETRY": "true",
            }
            search_role = batch_role | {"POSTGRES_USER": f"{os.environ['POSTGRES_DB']}_search"}
            built = run_cli("mlsys.search", "build-image-index", "--limit", "200", "--epochs",
                            "2", "--resolution", "24", "--width", "4", env=search_role)  # fmt: skip
            assert "version 1: champion; posts embedded: 600" in built.stdout, built.stdout
            logs = home / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            opened = {name: open(logs / f"{name}.log", "w") for name in ("relay", "consumer")}  # noqa: SIM115
            processes = [
                spawn(batch_role, "mlsys.batch", "relay", "--follow", "--interval", "0.2",
                      log=opened["relay"]),
                spawn(search_role, "mlsys.search", "image-index-consumer",
                      log=opened["consumer"]),
            ]  # fmt: skip
            try:
                # Ready once it has gone through the seeded posts' messages (queued at the
                # load, all embedded by the job already: nothing new is written).
                deadline = time.monotonic() + 180
                while waiting(Queue.image_index) or "embedded=" not in read(logs / "consumer.log"):
                    assert time.monotonic() < deadline, read(logs / "consumer.log")[-3000:]
                    time.sleep(0.2)
                yield api, logs
            finally:
                for process in processes:
                    process.terminate()
                for process in processes:
                    process.wait(timeout=30)
                for log in opened.values():
                    log.close()


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def waiting(queue) -> int:
    from mlsys.aianimals.messages import rabbitmq_connection

    connection = rabbitmq_connection()
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


@pytest.fixture(autouse=True)
def local_home(deployed):
    """Keep the module's environment (the shared autouse fixture would replace MLSYS_HOME)."""
    return Path(os.environ["MLSYS_HOME"])


def similar(api, token, animal_id: str):
    return api.post("/v0/animal/search/similar", json={"animal_id": animal_id}, headers=token)


# The product's goal; the test allows three times it, a margin a loaded 2-core CI machine
# keeps, and prints the figure.
GOAL_SECONDS = 5


def test_a_new_post_is_in_the_image_index_within_seconds_and_poison_is_dead_lettered(
    deployed,
):
    api, logs = deployed
    token = login(api)
    seeded = api.get("/v0/animal", headers=token, params={"limit": 1}).json()[0]
    wait_until(lambda: similar(api, token, seeded["id"]).status_code == 200, timeout=60)
    again = api.get(seeded["photo_url"], headers=token)  # posted again: the same pixels
    assert again.status_code == 200
    before = dead_letters(Queue.image_index)
    publish({"animal_id": "0" * 32})  # no such post
    publish({"unexpected": True})  # names no post
    start = time.monotonic()
    frog = post_animal(api, token, "池のほとり", photo=again.content, name="かえる")["id"]
    try:
        wait_until(lambda: similar(api, token, frog).status_code == 200, timeout=3 * GOAL_SECONDS)
    except AssertionError:
        raise AssertionError(read(logs / "consumer.log")[-4000:]) from None
    elapsed = time.monotonic() - start
    print(f"a new post similar-searchable after {elapsed:.2f} s (goal {GOAL_SECONDS} s)")
    body = similar(api, token, frog).json()
    assert body["model"].endswith("/1") and len(body["results"]) == 10
    # The seeded post with the same photo is the nearest: identical.
    assert body["results"][0]["similarity"] == pytest.approx(1.0, abs=1e-5)
    assert seeded["id"] in [hit["id"] for hit in body["results"] if hit["similarity"] > 0.9999]
    wait_until(lambda: dead_letters(Queue.image_index) == before + 2, timeout=20)
    consumer_log = (logs / "consumer.log").read_text()
    assert "has no animal_id" in consumer_log, consumer_log[-3000:]
