"""The API on the services profile against the PostgreSQL, Redis and RabbitMQ on localhost
(search on the local engine: no Elasticsearch server runs here). Posts and likes travel
outbox -> relay -> RabbitMQ -> search-index consumer -> index, and invalidate Redis.
Every component connects as its own PostgreSQL role, as deployed."""

import os
import time
import uuid

import pytest

from tests.helpers.aianimals import (
    PNG,
    cache_count,
    metric,
    post_animal,
    same_pixels,
    search,
    services_deployment,
)
from tests.helpers.cli import run_cli
from tests.helpers.http import link_token, login, mailed, serving_api

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def services(tmp_path_factory, aianimals_generated):
    home = tmp_path_factory.mktemp("services") / "mlsys-home"
    with services_deployment(home, aianimals_generated) as client:
        yield client, home


@pytest.fixture(autouse=True)
def local_home(services):
    """Keep the module's environment (the shared autouse fixture would replace MLSYS_HOME)."""
    return services[1]


@pytest.fixture
def api(services):
    return services[0]


def soon(observe, expected):
    """`observe()` once it equals `expected`. An invalidation reaches the API's near
    copies by a Redis message: within a second, far sooner than the copies expire."""
    from mlsys.aianimals.cache import NEAR_COPY_SECONDS

    deadline = time.monotonic() + min(1.0, NEAR_COPY_SECONDS / 3)
    while (seen := observe()) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    return seen


def deliver() -> str:
    """What the relay and the search-index consumer Deployments do, once."""
    run_cli("mlsys.batch", "relay")
    return run_cli("mlsys.batch", "search-index", "--idle-seconds", "1").stdout


def test_login_against_postgresql(api):
    assert login(api)["token"]
    bad = api.post("/v0/user/login", json={"handle_name": "dog_leigh", "password": "x"})
    assert bad.status_code == 401


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("animal_category_name_en", "dog"),
        ("animal_category_name_ja", "ネコ"),
        ("animal_subcategory_name_en", "bengal"),
        ("animal_subcategory_name_ja", "シバイヌ"),
    ],
)
def test_search_filters(api, field, value):
    found = search(api, login(api), {field: value}, limit=200)
    assert found["hits"] > 0
    assert {hit[field] for hit in found["results"]} == {value}


@pytest.mark.parametrize("sort_by", ["score", "like", "created_at", "random"])
def test_search_sorts_and_pages(api, sort_by):
    token = login(api)
    body = {"phrases": ["ねこ"], "sort_by": sort_by, "seed": 5}
    everything = search(api, token, body, limit=200)
    pages = [search(api, token, body, limit=25, offset=o)["results"] for o in range(0, 200, 25)]
    assert [h["id"] for page in pages for h in page] == [h["id"] for h in everything["results"]]
    results = everything["results"]
    key = {"score": "score", "like": "like", "created_at": "created_at"}.get(sort_by)
    if key:
        values = [h[key] for h in results]
        assert values == sorted(values, reverse=True)
    # ねこ, ネコ and 猫 find the same posts.
    for spelling in ("ネコ", "猫"):
        same = search(api, token, body | {"phrases": [spelling]}, limit=200)
        assert same["hits"] == everything["hits"]


def test_like_flows_through_rabbitmq_and_invalidates_redis(api):
    token = login(api)
    body = {"animal_subcategory_name_en": "persian", "sort_by": "like"}
    before = search(api, token, body, limit=200)
    target = before["results"][-1]
    again = search(api, token, body, limit=200)  # from the cache, with its own search_id
    assert again["search_id"] != before["search_id"]
    assert again | {"search_id": None} == before | {"search_id": None}
    assert api.post("/v0/like", json={"animal_id": target["id"]}, headers=token).status_code == 201
    # Until the message is delivered, the cached (and indexed) count is unchanged.
    unchanged = search(api, token, body, limit=200)
    assert (
        next(h["like"] for h in unchanged["results"] if h["id"] == target["id"]) == target["like"]
    )
    assert "handled: 1" in deliver()

    def likes():
        found = search(api, token, body, limit=200)["results"]
        return next(h["like"] for h in found if h["id"] == target["id"])

    assert soon(likes, target["like"] + 1) == target["like"] + 1
    assert (
        api.delete("/v0/like", params={"animal_id": target["id"]}, headers=token).status_code == 204
    )
    deliver()
    assert soon(likes, target["like"]) == target["like"]


def test_search_answers_while_redis_is_unreachable(services, monkeypatch):
    from tests.helpers.services import free_port

    monkeypatch.setenv("REDIS_PORT", str(free_port()))
    monkeypatch.setenv("POSTGRES_USER", f"{os.environ['POSTGRES_DB']}_api")  # as deployed
    with serving_api() as (client, _):
        token = login(client)
        body = {"phrases": ["ねこ"], "sort_by": "created_at"}
        misses = cache_count(client, "miss")
        answers = [search(client, token, body, limit=10) for _ in range(2)]
        assert answers[0]["hits"] > 0 and answers[0]["results"] == answers[1]["results"]
        assert cache_count(client, "miss") == misses + 2  # computed both times


def found_by(api, token, phrase) -> list[str]:
    return [h["id"] for h in search(api, token, {"phrases": [phrase]})["results"]]


def test_a_new_post_flows_outbox_rabbitmq_consumer_index(api):
    token = login(api)
    animal_id = post_animal(api, token, "ペルシャの猫、こたつで丸くなる", name="ハナ")["id"]
    assert found_by(api, token, "こたつ") == []  # not indexed before delivery
    assert "handled: 1" in deliver()
    assert soon(lambda: found_by(api, token, "こたつ"), [animal_id]) == [animal_id]


def test_a_post_made_while_rabbitmq_is_down_is_delivered_later(api, monkeypatch):
    from tests.helpers.services import free_port

    token = login(api)
    monkeypatch.setenv("RABBITMQ_PORT", str(free_port()))  # the broker is unreachable
    # The API does not care.
    animal_id = post_animal(api, token, "ペルシャの猫が紅葉を見ています", name="ハナ")["id"]
    down = run_cli("mlsys.batch", "relay", check=False)
    assert down.returncode == 1 and "unreachable" in down.stderr
    metrics = api.get("/metrics").text
    assert "outbox_waiting_messages 1.0" in metrics
    monkeypatch.setenv("RABBITMQ_PORT", "5672")  # it is back
    assert "handled: 1" in deliver()
    assert soon(lambda: found_by(api, token, "紅葉"), [animal_id]) == [animal_id]
    assert "outbox_waiting_messages 0.0" in api.get("/metrics").text


def test_with_unjudged_posts_hidden_a_post_waits_for_its_verdict(api, monkeypatch):
    """Issue 32, item 3: a post the classifier never judged (an outage, a dead-lettered
    message) was shown. With MODERATION_UNJUDGED_POSTS=hidden it is indexed only once a
    verdict is recorded, and /metrics counts the posts waiting either way."""
    from sqlalchemy import create_engine

    from mlsys.common.settings import database_url
    from mlsys.violation_detection.detect import Judgement, Judgements, record

    token = login(api)
    monkeypatch.setenv("MODERATION_UNJUDGED_POSTS", "hidden")  # the consumer's setting
    waiting = metric(api, "moderation_waiting_posts")
    animal_id = post_animal(api, token, "ペルシャの猫が雪見障子から覗いています", name="ハナ")["id"]
    assert metric(api, "moderation_waiting_posts") == waiting + 1
    assert metric(api, "moderation_oldest_waiting_seconds") > 0  # the seeded posts
    assert "handled: 1" in deliver()
    assert found_by(api, token, "雪見障子") == []  # not judged: not shown
    # The detection consumer's transaction, as its role: a verdict, announced.
    with monkeypatch.context() as moderation:
        moderation.setenv("POSTGRES_USER", f"{os.environ['POSTGRES_DB']}_violation_detection")
        engine = create_engine(database_url("aianimals"))
    with engine.begin() as db:
        record(db, Judgements("no_animal_violation/1", 0.5, [Judgement(animal_id, 0.1, False)]))
    engine.dispose()
    assert metric(api, "moderation_waiting_posts") == waiting
    assert "handled: 1" in deliver()
    assert soon(lambda: found_by(api, token, "雪見障子"), [animal_id]) == [animal_id]


def test_revoked_tokens_and_case_insensitive_handles_on_postgresql(api):
    handle = f"user_{uuid.uuid4().hex[:12]}"
    body = {"handle_name": handle, "email_address": f"{handle}@example.com",
            "password": "a long password", "age": 30, "gender": 1}  # fmt: skip
    assert api.post("/v0/user", json=body).status_code == 202
    # What the relay and the account-mail consumer Deployments do, once; then the link.
    run_cli("mlsys.batch", "relay")
    assert "handled: 1" in run_cli("mlsys.batch", "account-mail", "--idle-seconds", "1").stdout
    token = {"token": link_token(mailed(body["email_address"]))}
    assert api.post("/v0/user/verify", json=token).status_code == 201
    upper = {**body, "handle_name": handle.upper(), "email_address": "other@example.com"}
    assert api.post("/v0/user", json=upper).status_code == 409
    token = login(api, handle.upper(), "a long password")
    assert search(api, token, {"phrases": ["ねこ"]})["hits"] > 0  # now cached in Redis
    assert api.post("/v0/user/logout", headers=token).status_code == 204
    again = api.post("/v0/animal/search", json={"phrases": ["ねこ"]}, headers=token)
    assert again.status_code == 401


def test_a_retried_access_log_is_accepted_once_by_a_role_that_cannot_read_them(api):
    """Found by the property run on PostgreSQL: ON CONFLICT with a target needs SELECT."""
    token = login(api)
    log = {"search_id": uuid.uuid4().hex, "animal_id": "0" * 32, "action": "like"}
    assert api.post("/v0/access_log", json=log, headers=token).status_code == 201
    assert api.post("/v0/access_log", json=log, headers=token).status_code == 201


def test_readiness_waits_until_the_schema_is_at_head(tmp_path, monkeypatch):
    """Issue 11, item 8: a replica of a newer version was ready on an older schema."""
    from sqlalchemy import create_engine

    from mlsys.aianimals.database import SCHEMA
    from mlsys.common import migrate
    from tests.helpers.services import PG, create_database, drop_database

    database = create_database("mlsys_ready")
    engine = create_engine(f"postgresql+psycopg://{PG['user']}@{PG['host']}/{database}")
    try:
        migrate.upgrade(SCHEMA, engine, "0004")  # the schema of the version before
        monkeypatch.setenv("POSTGRES_DB", database)
        monkeypatch.setenv("POSTGRES_USER", PG["user"])
        monkeypatch.setenv("MLSYS_HOME", str(tmp_path))
        with serving_api() as (client, _):
            behind = client.get("/v0/health-check/ready")
            assert behind.status_code == 503 and "migrate" in behind.json()["detail"]
            assert client.get("/v0/health-check").status_code == 200  # alive all the same
            migrate.upgrade(SCHEMA, engine)
            assert client.get("/v0/health-check/ready").status_code == 200
    finally:
        engine.dispose()
        drop_database(database)


def test_a_photo_posted_to_one_replica_is_served_by_another_without_a_shared_disk(
    api, tmp_path, monkeypatch
):
    """Issue 11, item 4: the photos lived on a ReadWriteOnce volume that two API replicas
    and the initial load mounted (a Multi-Attach error on a second node)."""
    token = login(api)
    animal_id = post_animal(api, token, "ふたつめのサーバーで見る猫", name="ハナ")["id"]
    photo_url = api.get("/v0/animal", params={"id": animal_id}, headers=token).json()[0][
        "photo_url"
    ]
    monkeypatch.setenv("MLSYS_HOME", str(tmp_path / "another-node"))  # nothing shared on disk
    monkeypatch.setenv("POSTGRES_USER", os.environ["POSTGRES_USER"].replace("_batch", "_api"))
    with serving_api() as (other, _):
        served = other.get(photo_url)
        assert served.status_code == 200 and served.headers["content-type"] == "image/png"
        assert same_pixels(served.content, PNG)
        seeded = other.get("/v0/animal", params={"limit": 1}, headers=token).json()[0]
        assert other.get(seeded["photo_url"]).status_code == 200  # the initial load's too
    assert not (tmp_path / "another-node" / "storage").exists()


def online_features(animal_id: str) -> float | None:
    """The owner's posts among the post's online features, read as the API reads them."""
    from sqlalchemy import select

    from mlsys.aianimals.database import get_engine
    from mlsys.aianimals.tables import PostActivity

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("POSTGRES_USER", os.environ["POSTGRES_USER"].replace("_batch", "_api"))
        engine = get_engine()
    with engine.connect() as connection:
        row = connection.execute(
            select(PostActivity.owner_posts).where(PostActivity.animal_id == animal_id)
        ).first()
    return row[0] if row else None


def test_new_posts_reach_the_online_features_through_rabbitmq(api, monkeypatch):
    """Issue 12: learn_to_rank's online features follow new posts through the outbox,
    RabbitMQ and the ranking-features consumer (as the search role); a poison message is
    dead-lettered and the rest go on. (A like changes the post's count in the search
    engine, which the API scores; the consumer only refreshes the owner's post count.)"""
    from sqlalchemy import func, select

    from mlsys.aianimals.database import get_engine
    from mlsys.aianimals.messages import Topic, add_to_outbox, rabbitmq_connection
    from mlsys.aianimals.tables import Animal

    search_role = os.environ["POSTGRES_USER"].replace("_batch", "_search")

    def consume_features() -> str:
        run_cli("mlsys.batch", "relay")
        with monkeypatch.context() as patch:
            patch.setenv("POSTGRES_USER", search_role)
            return run_cli("mlsys.search", "features-consumer", "--idle-seconds", "1").stdout

    consume_features()  # what the initial load queued
    token = login(api)
    animal_id = post_animal(api, token, "オンラインの特徴を持つ猫", name="ハナ")["id"]
    assert online_features(animal_id) is None
    with get_engine().begin() as connection:
        add_to_outbox(connection, Topic.animal_created, [{"no": "animal_id"}])  # poison
    handled = consume_features()
    assert "handled: 1" in handled and "dead-lettered: 1" in handled, handled
    with get_engine().connect() as connection:
        owner = connection.scalar(select(Animal.user_id).where(Animal.id == animal_id))
        owned = connection.scalar(select(func.count()).where(Animal.user_id == owner))
    assert online_features(animal_id) == float(owned)
    assert api.post("/v0/like", json={"animal_id": animal_id}, headers=token).status_code == 201
    assert "handled: 1" in consume_features()
    assert online_features(animal_id) == float(owned)
    channel = rabbitmq_connection().channel()
    dead = channel.queue_declare("ranking-features.dead", passive=True).method.message_count
    assert dead == 1
    channel.connection.close()


def _handle_with_an_i(not_this: str = "dog_leigh") -> str:
    from sqlalchemy import select

    from mlsys.aianimals.database import get_engine
    from mlsys.aianimals.tables import User

    with get_engine().connect() as connection:
        handles = connection.scalars(select(User.handle_name).order_by(User.handle_name)).all()
    return next(h for h in handles if "i" in h and h != not_this)


def test_the_throttle_holds_when_the_cache_evicts_everything(api):
    """Issue 32, item 2: 1,200 cached searches evicted the counts from Redis (allkeys-lru);
    they are in the database now, where nothing evicts them."""
    import redis

    from mlsys.common.settings import redis_settings

    handle = _handle_with_an_i()
    failures = [
        api.post("/v0/user/login", json={"handle_name": handle, "password": "x"}).status_code
        for _ in range(5)
    ]
    assert failures == [401] * 5
    client = redis.Redis()
    keys = list(client.scan_iter(f"{redis_settings().key_prefix}*"))
    assert keys and client.delete(*keys)  # what an eviction of everything leaves
    locked = api.post("/v0/user/login", json={"handle_name": handle, "password": "password"})
    assert locked.status_code == 429


def test_a_spelling_postgresql_folds_to_a_handle_counts_as_that_account(api):
    """Issue 32, item 11: PostgreSQL's lower('İ') is 'i', Python's is 'i̇': `dog_leİgh`
    logs in as `dog_leigh`, and so must count as `dog_leigh`."""
    from sqlalchemy import text

    from mlsys.aianimals.database import get_engine

    handle = _handle_with_an_i(not_this=_handle_with_an_i())
    spelled = handle.replace("i", "İ", 1)
    with get_engine().connect() as connection:
        assert connection.scalar(text("SELECT lower(:a) = lower(:b)"), {"a": spelled, "b": handle})
    for name in [handle] * 4 + [spelled]:
        answer = api.post("/v0/user/login", json={"handle_name": name, "password": "x"})
        assert answer.status_code == 401
    locked = api.post("/v0/user/login", json={"handle_name": handle, "password": "password"})
    assert locked.status_code == 429
