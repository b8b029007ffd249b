"""`make demo SERVE=0` runs every job; `make serve` then serves what they made (the BI, the
MLflow UI, the API and its web client, the A/B proxy, the classifier, the portal) and
loads nothing again. Running each job twice is tested beside the job: registering and
loading (tests/data_registration, tests/batch), the gates keeping their champion
(tests/common/test_tracking.py, the weekly schedule's second and third weeks)."""

import json
import os
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from tests.helpers.cli import local_env
from tests.helpers.http import wait_for_url
from tests.helpers.paths import ROOT
from tests.helpers.services import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


PRODUCT_TABLES = {
    "beverage": ["item_sales", "weekly_sales_predictions", "stores", "items"],
    "aianimals": ["users", "animals", "likes", "access_logs", "outbox"],
}


# The demo's classifier takes 4 to 8 minutes on 2 cores; its tests measure the same code at
# a small, seeded size.
QUICK_CLASSIFIER = "MODERATION_ARGS=--components 16 --limit 300"
QUICK_EMBEDDING = "IMAGE_INDEX_ARGS=--epochs 2 --resolution 24 --width 4 --limit 200"


def counts(home):
    result = {}
    for product, tables in PRODUCT_TABLES.items():
        with sqlite3.connect(home / f"{product}.db") as db:
            result |= {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables}
    return result


def judged(home) -> int:
    with sqlite3.connect(home / "aianimals.db") as db:
        return db.execute("SELECT count(*) FROM violations").fetchone()[0]


# The jobs took 250 to 420 s on machines that ran the suite in 43 to 75 minutes.
@pytest.mark.timeout(1500)
def test_make_demo_then_serve(tmp_path):
    home = tmp_path / "home"
    env = local_env(home)
    first = subprocess.run(
        [
            "make",
            "demo",
            "SERVE=0",
            "POSTS=2000",
            "SEARCHES=2000",
            QUICK_CLASSIFIER,
            QUICK_EMBEDDING,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    assert "promoted to champion" in first.stdout
    after_first = counts(home)
    assert {k: after_first[k] for k in ("item_sales", "weekly_sales_predictions", "users")} == {
        "item_sales": 18_000,
        "weekly_sales_predictions": 100,
        "users": 2848,
    }
    assert after_first["animals"] == after_first["outbox"] == 2000
    assert "handled: 2000" in first.stdout
    ranker = json.loads((home / "ranker.json").read_text())
    assert set(ranker["hidden_quality"]) == {
        "ranker",
        "regressor",
        "likes",
        "text_score",
        "recency",
    }
    assert "registered aianimals_search_ranker version 1" in first.stdout
    similar_words = json.loads((home / "similar_words.json").read_text())
    assert {"logged", "synonym_queries", "similar_words"} <= set(similar_words)
    assert "registered aianimals_similar_words version 1" in first.stdout
    moderation = json.loads((home / "moderation.json").read_text())
    assert set(moderation) >= {"test", "validation", "baseline"}
    assert "yunus_dog_love: moderator" in first.stdout
    image_index = json.loads((home / "image_index.json").read_text())
    assert {"recall@10", "precision@10_label", "precision@10_subcategory"} <= set(image_index)
    assert "version 1: champion; posts embedded: 2000" in first.stdout

    bi_port, mlflow_port, api_port, ab_port = free_port(), free_port(), free_port(), free_port()
    classifier_port, portal_port = free_port(), free_port()
    demo = subprocess.Popen(
        [
            "make",
            "serve",
            f"BI_PORT={bi_port}",
            f"MLFLOW_PORT={mlflow_port}",
            f"API_PORT={api_port}",
            f"AB_PORT={ab_port}",
            f"CLASSIFIER_PORT={classifier_port}",
            f"PORTAL_PORT={portal_port}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for_url(f"http://127.0.0.1:{bi_port}/_stcore/health", 180, process=demo)
        wait_for_url(f"http://127.0.0.1:{mlflow_port}/health", 120, process=demo)
        wait_for_url(f"http://127.0.0.1:{api_port}/v0/docs", 120, process=demo)
        wait_for_url(f"http://127.0.0.1:{ab_port}/ab/health", 120, process=demo)
        login = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/v0/user/login",
            data=json.dumps({"handle_name": "dog_leigh", "password": "password"}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(login, timeout=10) as response:
            token = json.load(response)["token"]
        ranked = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/v0/animal/search",
            data=json.dumps({"phrases": ["ねこ"], "sort_by": "learn_to_rank"}).encode(),
            headers={"Content-Type": "application/json", "token": token},
        )

        def ranked_by() -> str:
            with urllib.request.urlopen(ranked, timeout=10) as response:
                return response.headers["X-Ranking"]

        deadline = time.monotonic() + 30
        while not ranked_by().startswith("learn_to_rank") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert ranked_by() == "learn_to_rank; model=aianimals_search_ranker/1"
        # Similar photos: the champion embedding, every post in its index.
        with urllib.request.urlopen(ranked, timeout=10) as response:
            a_cat = json.load(response)["results"][0]["id"]
        similar = urllib.request.Request(
            f"http://127.0.0.1:{api_port}/v0/animal/search/similar",
            data=json.dumps({"animal_id": a_cat, "limit": 5}).encode(),
            headers={"Content-Type": "application/json", "token": token},
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(similar, timeout=10) as response:
                    found = json.load(response)
                break
            except urllib.error.HTTPError as error:  # 503 while the index is built
                assert error.code == 503 and time.monotonic() < deadline, error.read()
                time.sleep(0.5)
        assert found["model"] == "aianimals_image_embedding/1"
        assert len(found["results"]) == 5 and a_cat not in [r["id"] for r in found["results"]]
        # Moderation runs: the classifier serves the champion, the consumer judges every
        # post, the portal answers; the web client is served by the API.
        wait_for_url(f"http://127.0.0.1:{classifier_port}/health/ready", 120, process=demo)
        wait_for_url(f"http://127.0.0.1:{portal_port}/_stcore/health", 120, process=demo)
        wait_for_url(f"http://127.0.0.1:{api_port}/app/", 10, process=demo)
        deadline = time.monotonic() + 120
        while judged(home) < 2000 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert judged(home) == 2000
    finally:
        os.killpg(demo.pid, signal.SIGTERM)
        output, _ = demo.communicate(timeout=60)
    assert f"BI:     http://localhost:{bi_port}" in output
    assert f"API:    http://localhost:{api_port}/v0/docs" in output
    assert f"Portal: http://localhost:{portal_port}" in output
    assert "log in as yunus_dog_love / password" in output
    after = counts(home)
    # Serving loaded nothing again; the outbox grew by one message per verdict (the
    # detection consumer announces each: a violation leaves search, and with
    # MODERATION_UNJUDGED_POSTS=hidden a post judged fine joins it).
    assert {**after, "outbox": after["outbox"] - judged(home)} == after_first


def test_serving_before_any_demo_says_what_to_run(tmp_path):
    served = subprocess.run(["make", "serve"], cwd=ROOT, env=local_env(tmp_path / "home"),
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert served.returncode != 0
    assert "run make demo first" in served.stdout
