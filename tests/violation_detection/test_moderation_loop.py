"""The moderation loop in the services profile, on this machine's PostgreSQL, Redis and
RabbitMQ, each component as its own PostgreSQL role and its own process, as deployed:
the API, the relay, the search-index consumer, the classifier server, the detection
consumer and the review portal (in headless Chromium).

A no-animal photo posted through the API is judged, deactivated and gone from search
within seconds (the goal is 5: the figure is printed); an animal photo stays; a poison
message is dead-lettered while the consumer goes on; a message delivered twice writes one
row; a moderator's reversal in the portal brings the post back; the decision is a label
that `retrain` learns from.

The classifier is a tiny untrained one whose threshold is set between the scores of the
two photos posted: this is a test of the loop, the classifier's quality is measured by
`train` (tests/violation_detection/test_classifier_training.py, `make bench`).
"""

import io
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageOps
from sqlalchemy import create_engine, text

from mlsys.aianimals.messages import Queue
from mlsys.violation_detection.review import REFUSED
from tests.helpers.aianimals import (
    AIANIMALS_POSTS,
    dead_letters,
    post_animal,
    publish,
    search,
    services_deployment,
    spawn,
    wait_until,
)
from tests.helpers.cli import run_cli
from tests.helpers.http import login, wait_for_url
from tests.helpers.moderation import IMAGES, register_tiny_classifier
from tests.helpers.monitoring import scrape
from tests.helpers.paths import SCREENSHOTS
from tests.helpers.services import PG, free_port

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.slow]

MODERATOR, PASSWORD = "yunus_dog_love", "password"  # a seeded user, made a moderator here
# A post name that Markdown would make a link and an image fetched from another host.
MARKDOWN_NAME = "**太字** [リンク](http://127.0.0.1:9/x) ![画像](http://127.0.0.1:9/p.png)"
NO_ANIMAL = IMAGES / "no_animal"
ANIMAL = IMAGES / "animal"


def mirrored(path) -> bytes:
    """A dataset photo mirrored: pixel for pixel none of the dataset's photos, so the
    label it gets may join a training set without being a validation or test photo."""
    buffer = io.BytesIO()
    with Image.open(path) as image:
        ImageOps.mirror(image.convert("RGB")).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Loop:
    api: object
    database_url: str
    portal_url: str
    portal_metrics: str  # its pages' runs (METRICS_PORT)
    env: dict
    no_animal: bytes
    animal: bytes
    stop_classifier: Callable[[], None]
    start_classifier: Callable[[], None]


@pytest.fixture(scope="module")
def loop(tmp_path_factory, aianimals_generated):
    home = tmp_path_factory.mktemp("moderation") / "mlsys-home"
    with services_deployment(home, aianimals_generated) as api:
        database = os.environ["POSTGRES_DB"]
        owner_url = f"postgresql+psycopg://{PG['user']}@{PG['host']}:{PG['port']}/{database}"
        run_cli("mlsys.batch", "grant-role", MODERATOR, "moderator")
        # Two candidate photos each way, scored by the tiny model: the threshold goes
        # between the highest-scoring no-animal one and the lowest-scoring animal one.
        candidates = {
            **{f"no_animal:{p.name}": p for p in sorted(NO_ANIMAL.glob("*.png"))[:6]},
            **{f"animal:{p.name}": p for p in sorted(ANIMAL.glob("*.png"))[:6]},
        }
        mirrored_files = {}
        for name, path in candidates.items():
            mirrored_files[name] = tmp_path_factory.mktemp("photos") / path.name
            mirrored_files[name].write_bytes(mirrored(path))
        chosen = {}

        def between(scores: dict[str, float]) -> float:
            no_animal = max((n for n in scores if n.startswith("no_animal")), key=scores.get)
            animal = min((n for n in scores if n.startswith("animal")), key=scores.get)
            assert scores[no_animal] != scores[animal]
            if scores[no_animal] < scores[animal]:  # untrained, it may have it backwards
                no_animal, animal = animal, no_animal
            chosen.update(no_animal=no_animal, animal=animal)
            return (scores[no_animal] + scores[animal]) / 2

        register_tiny_classifier(between, photos=mirrored_files)
        no_animal, animal = chosen["no_animal"], chosen["animal"]
        port, portal_port, portal_metrics = free_port(), free_port(), free_port()
        base = os.environ | {
            "RABBITMQ_RETRY_BASE_SECONDS": "0.2",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "VIOLATION_DETECTION_TOKEN": "classifier-token-" + "x" * 32,  # server and caller
        }
        moderation = base | {
            "POSTGRES_USER": f"{database}_violation_detection",
            "VIOLATION_DETECTION_URL": f"http://127.0.0.1:{port}",
            # The deployed retries (1, 2, 4, 8, 16, then 30 s): the outage test needs them.
            "RABBITMQ_RETRY_BASE_SECONDS": "1",
            "RABBITMQ_MAX_ATTEMPTS": "12",
        }
        logs = home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        opened = {name: open(logs / f"{name}.log", "w") for name in  # noqa: SIM115
                  ("relay", "index", "server", "consumer", "portal")}  # fmt: skip

        def start_classifier() -> None:
            server = spawn(base, "mlsys.violation_detection", "serve", "--port", str(port),
                           log=opened["server"])  # fmt: skip
            processes.append(server)
            wait_for_url(f"http://127.0.0.1:{port}/health/ready", timeout=120, process=server)

        def stop_classifier() -> None:
            processes[-1].terminate()
            processes[-1].wait(timeout=30)

        processes = [
            spawn(base, "mlsys.batch", "relay", "--follow", "--interval", "0.2",
                  log=opened["relay"]),
            spawn(base, "mlsys.batch", "search-index", log=opened["index"]),
            spawn(moderation, "mlsys.violation_detection", "consume", log=opened["consumer"]),
            portal := spawn(moderation | {"METRICS_PORT": str(portal_metrics)},
                            "mlsys.violation_detection", "portal", "--port", str(portal_port),
                            log=opened["portal"]),
        ]  # fmt: skip
        try:
            start_classifier()  # the last process: the one stop_classifier stops
            wait_for_url(f"http://127.0.0.1:{portal_port}/_stcore/health", timeout=120,
                         process=portal)  # fmt: skip
            engine = create_engine(owner_url)
            deadline = time.monotonic() + 120
            while judged(engine) < AIANIMALS_POSTS:  # the seeded posts, queued at the load
                assert time.monotonic() < deadline, (logs / "consumer.log").read_text()[-3000:]
                time.sleep(0.2)
            engine.dispose()
            yield Loop(
                api=api,
                database_url=owner_url,
                portal_url=f"http://127.0.0.1:{portal_port}",
                portal_metrics=f"http://127.0.0.1:{portal_metrics}/metrics",
                env=moderation,
                no_animal=mirrored_files[no_animal].read_bytes(),
                animal=mirrored_files[animal].read_bytes(),
                stop_classifier=stop_classifier,
                start_classifier=start_classifier,
            )
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=30)
            for log in opened.values():
                log.close()


@pytest.fixture(autouse=True)
def local_home(loop):
    """Keep the module's environment (the shared autouse fixture would replace MLSYS_HOME)."""
    return Path(loop.env["MLSYS_HOME"])


def judged(engine) -> int:
    with engine.connect() as db:
        return db.execute(text("SELECT count(*) FROM violations")).scalar()


def found(api, token, phrase) -> list[str]:
    return [hit["id"] for hit in search(api, token, {"phrases": [phrase]})["results"]]


def violation_of(loop: Loop, animal_id: str):
    engine = create_engine(loop.database_url)
    try:
        with engine.connect() as db:
            return db.execute(
                text("SELECT v.is_violation, v.model_version, a.deactivated FROM violations v "
                     "JOIN animals a ON a.id = v.animal_id WHERE v.animal_id = :id"),
                {"id": animal_id},
            ).all()  # fmt: skip
    finally:
        engine.dispose()


# The product's goal; the test allows three times it, a margin a loaded 2-core CI machine
# keeps, and prints the figure (0.76 s on 2026-12-07, 2-core machine, a job running beside).
GOAL_SECONDS = 5


def test_a_no_animal_post_leaves_search_within_seconds_and_an_animal_post_stays(loop):
    token = login(loop.api)
    start = time.monotonic()
    stapler = post_animal(loop.api, token, "机の上のホチキス", photo=loop.no_animal)["id"]
    cat = post_animal(loop.api, token, "こたつで丸くなるペルシャ", photo=loop.animal)["id"]
    limit = 3 * GOAL_SECONDS
    wait_until(lambda: [row[0] for row in violation_of(loop, stapler)] == [True], timeout=limit)
    wait_until(
        lambda: found(loop.api, token, "ホチキス") == [],
        timeout=limit - (time.monotonic() - start),
    )
    elapsed = time.monotonic() - start
    print(
        f"no-animal post judged, deactivated and out of search after {elapsed:.2f} s"
        f" (goal {GOAL_SECONDS} s)"
    )
    assert violation_of(loop, stapler)[0][2] is True  # deactivated
    wait_until(lambda: len(violation_of(loop, cat)) == 1, timeout=5)
    wait_until(lambda: found(loop.api, token, "こたつ") == [cat], timeout=5)
    assert violation_of(loop, cat)[0][0] is False and violation_of(loop, cat)[0][2] is False
    time.sleep(1)  # and it stays
    assert found(loop.api, token, "こたつ") == [cat]


def test_poison_messages_are_dead_lettered_and_a_redelivery_writes_one_row(loop):
    token = login(loop.api)
    before = dead_letters(Queue.violation_detection)
    publish({"animal_id": "0" * 32})  # no such post
    publish({"unexpected": True})  # names no post
    wait_until(lambda: dead_letters(Queue.violation_detection) == before + 2, timeout=20)
    # The consumer went on: a post after the poison is judged, and judged once although
    # its message comes three times.
    cat = post_animal(loop.api, token, "また猫", photo=loop.animal)["id"]
    wait_until(lambda: len(violation_of(loop, cat)) == 1, timeout=10)
    publish({"animal_id": cat}, times=2)
    # A post made after them is judged after them: one consumer takes the queue in order.
    after = post_animal(loop.api, token, "もう一匹", photo=loop.animal)["id"]
    wait_until(lambda: len(violation_of(loop, after)) == 1, timeout=10)
    assert len(violation_of(loop, cat)) == 1
    assert dead_letters(Queue.violation_detection) == before + 2


def test_a_classifier_outage_of_a_minute_delays_verdicts_and_loses_none(loop):
    """Issue 32, item 3: an outage longer than the 1 s + 2 s of retries dead-lettered the
    posts made during it, which then stayed in search unjudged. The classifier stopped
    for 60 s: the posts wait (and /metrics says so), then are judged within a minute of its
    return, none dead-lettered."""
    from tests.helpers.aianimals import metric

    token = login(loop.api)
    before = dead_letters(Queue.violation_detection)
    loop.stop_classifier()
    stopped = time.monotonic()
    try:
        made = [
            post_animal(loop.api, token, f"停電中の猫 {i}", photo=loop.animal)["id"]
            for i in range(3)
        ]
        made.append(
            stapler := post_animal(loop.api, token, "停電中のホチキス", photo=loop.no_animal)["id"]
        )
        time.sleep(max(60 - (time.monotonic() - stopped), 0))  # the outage itself
        assert all(violation_of(loop, animal_id) == [] for animal_id in made)
        assert metric(loop.api, "moderation_waiting_posts") == len(made)
        assert metric(loop.api, "moderation_oldest_waiting_seconds") >= 55
    finally:
        loop.start_classifier()
    returned = time.monotonic()
    wait_until(lambda: all(violation_of(loop, animal_id) for animal_id in made), timeout=60)
    print(f"posts made during a 60 s outage judged {time.monotonic() - returned:.1f} s "
          "after the classifier's return")  # fmt: skip
    assert dead_letters(Queue.violation_detection) == before
    assert [row[0] for row in violation_of(loop, stapler)] == [True]
    wait_until(lambda: found(loop.api, token, "停電中のホチキス") == [], timeout=10)
    assert metric(loop.api, "moderation_waiting_posts") == 0


def open_portal(browser, url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(url)
    page.get_by_role("button", name="Log in").wait_for(timeout=60_000)
    return page


def log_in(page, handle, password):
    page.get_by_label("Handle name").fill(handle)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_a_reversal_in_the_portal_brings_the_post_back_and_becomes_a_label(loop, browser):
    token = login(loop.api)
    stapler = post_animal(
        loop.api, token, "棚に並んだホッチキス", photo=loop.no_animal, name=MARKDOWN_NAME
    )["id"]
    wait_until(lambda: [row[0] for row in violation_of(loop, stapler)] == [True], timeout=5)
    wait_until(lambda: found(loop.api, token, "ホッチキス") == [], timeout=5)

    def answer_to(handle: str, password: str, expected: str) -> None:
        """A login on a freshly loaded portal, so that the answer waited for is this one's."""
        page.goto(loop.portal_url)
        page.get_by_role("button", name="Log in").wait_for(timeout=60_000)
        log_in(page, handle, password)
        page.get_by_text(expected).wait_for(timeout=30_000)

    page = open_portal(browser, loop.portal_url)
    # One answer for a wrong password and for a right one of an account that may not
    # review (issue 32, item 5: the portal told them apart).
    answer_to(MODERATOR, "a guess", REFUSED)
    page.screenshot(path=SCREENSHOTS / "portal_wrong_password.png", full_page=True)
    answer_to("dog_leigh", "password", REFUSED)  # right password, not a moderator
    assert page.get_by_role("heading", name="Review queue").count() == 0
    # Guesses in the portal count as the API's do: one throttle, whichever is asked.
    guessed = _rows(loop, "SELECT handle_name FROM users WHERE handle_name NOT IN "
                    "('dog_leigh', :id) ORDER BY handle_name LIMIT 1", MODERATOR)[0][0]  # fmt: skip
    for _ in range(5):
        answer_to(guessed, "a guess", REFUSED)
    answer_to(guessed, "password", "Too many failed logins")
    answer = loop.api.post("/v0/user/login", json={"handle_name": guessed, "password": "password"})
    assert answer.status_code == 429
    page.goto(loop.portal_url)
    page.get_by_role("button", name="Log in").wait_for(timeout=60_000)
    log_in(page, MODERATOR, PASSWORD)
    page.get_by_role("heading", name="Review queue").wait_for(timeout=60_000)
    page.get_by_role("button", name="Reverse: an animal").first.wait_for(timeout=60_000)
    page.screenshot(path=SCREENSHOTS / "portal_queue.png", full_page=True)
    [violation_id] = [
        row[0] for row in _rows(loop, "SELECT id FROM violations WHERE animal_id = :id", stapler)
    ]
    page.get_by_label("Post id or name (empty: the oldest waiting)").fill(stapler)
    page.keyboard.press("Enter")
    reverse = page.locator(f".st-key-reverse-{violation_id} button")
    reverse.wait_for(timeout=30_000)
    page.screenshot(path=SCREENSHOTS / "portal_queue_one_post.png", full_page=True)
    # The post's name is shown as typed: no link, no image fetched from its host (item 6).
    page.get_by_text(MARKDOWN_NAME).first.wait_for(timeout=30_000)
    assert page.locator('img[src*="127.0.0.1:9"], a[href*="127.0.0.1:9"]').count() == 0
    reverse.click()
    page.get_by_text("is back in search").wait_for(timeout=30_000)
    page.screenshot(path=SCREENSHOTS / "portal_reversed.png", full_page=True)
    wait_until(lambda: found(loop.api, token, "ホッチキス") == [stapler], timeout=10)

    page.get_by_role("link", name="Violations").click()
    page.get_by_role("heading", name="Violations").wait_for(timeout=60_000)
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=60_000)
    page.screenshot(path=SCREENSHOTS / "portal_violations.png", full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0
    # A role taken back ends the open session at its next rerun (item 7).
    run_cli("mlsys.batch", "grant-role", MODERATOR, "user")
    try:
        page.get_by_role("link", name="Review queue").click()
        page.get_by_text("Your session has ended: log in again.").wait_for(timeout=30_000)
        assert page.get_by_role("heading", name="Review queue").count() == 0
    finally:
        run_cli("mlsys.batch", "grant-role", MODERATOR, "moderator")
    page.close()
    # Both pages' runs are counted on the portal's METRICS_PORT (issue 35, item 1).
    runs = scrape(loop.portal_metrics)
    for name in ("queue", "violations"):
        assert runs[("streamlit_page_runs_total", frozenset({("page", name), ("outcome", "ok")}))]

    [(decision, reviewer)] = _rows(
        loop, "SELECT r.decision, u.handle_name FROM violation_reviews r JOIN users u "
        "ON u.id = r.reviewer_id JOIN violations v ON v.id = r.violation_id "
        "WHERE v.animal_id = :id", stapler,
    )  # fmt: skip
    assert (decision, reviewer) == ("reversed", MODERATOR)
    [(no_animal, source)] = _rows(
        loop, "SELECT no_animal, source FROM photo_labels WHERE animal_id = :id", stapler
    )
    assert (no_animal, source) == (False, "review")

    # `retrain` learns from it: the label joins the training photos (the post's photo is a
    # mirrored one, in no validation or test set) and the gate compares on the same test.
    report = loop.env["MLSYS_HOME"] + "/retrain.json"
    retrained = run_cli(
        "mlsys.violation_detection", "retrain", "--limit", "60", "--components", "4",
        "--output", report, env=loop.env,
    )  # fmt: skip
    assert "labels from reviews: 1 (0 no animal)" in retrained.stdout, retrained.stdout
    assert json.loads(Path(report).read_text())["reviewed_photos"] == 1
    assert "on the same photos" in retrained.stdout


def _rows(loop: Loop, sql: str, animal_id: str):
    engine = create_engine(loop.database_url)
    try:
        with engine.connect() as db:
            return db.execute(text(sql), {"id": animal_id}).all()
    finally:
        engine.dispose()
