"""The API on the embedded local profile, over real HTTP: the Android app's sequence,
authentication, likes with cache invalidation, posting photos, and clear errors."""

import json
import time

import pytest

from tests.helpers.aianimals import (
    PNG,
    android_app_sequence,
    cache_count,
    same_pixels,
    search,
    wait_until,
)
from tests.helpers.http import login, sign_up


def test_android_app_sequence(api):
    """The app's calls (tests.helpers.aianimals.android_app_sequence); the access logs are
    stored under the search and the user."""
    user_id, found, log = android_app_sequence(api)
    from mlsys.aianimals.database import get_engine

    with get_engine().connect() as connection:
        from sqlalchemy import text

        actions = connection.execute(
            text("SELECT action, user_id FROM access_logs WHERE search_id = :s ORDER BY action"),
            {"s": found["search_id"]},
        ).all()
    assert actions == [("like", user_id), ("see_long", user_id), ("select", user_id)]
    # A retried access log is harmless (natural key).
    assert api.post("/v0/access_log", json=log, headers=login(api)).status_code == 201


def test_bearer_tokens_and_email_login_work_too(api):
    response = api.post(
        "/v0/user/login", json={"email_address": "dog_leigh@example.com", "password": "password"}
    )
    token = response.json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.get("/v0/animal", params={"limit": 1}, headers=bearer).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"token": "not-a-jwt"}, {"Authorization": "Bearer forged.token.value"}],
)
def test_reads_need_a_valid_token(api, headers):
    response = api.get("/v0/animal", headers=headers)
    assert response.status_code == 401
    assert "token" in response.json()["detail"] or "log in" in response.json()["detail"]


def test_an_expired_token_is_refused(api):
    from mlsys.aianimals.settings import auth_settings
    from mlsys.api.security import create_token

    user_id = api.post(
        "/v0/user/login", json={"handle_name": "dog_leigh", "password": "password"}
    ).json()["user_id"]
    expired = auth_settings().model_copy(update={"token_minutes": -1})
    response = api.get("/v0/animal", headers={"token": create_token(user_id, 0, expired)})
    assert response.status_code == 401 and "expired" in response.json()["detail"]


def test_wrong_password_and_unknown_user_get_the_same_answer(api):
    wrong = api.post("/v0/user/login", json={"handle_name": "dog_leigh", "password": "nope"})
    unknown = api.post("/v0/user/login", json={"handle_name": "nobody_x", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert api.post("/v0/user/login", json={"password": "x"}).status_code == 422


def test_register_then_login(api):
    user = {
        "handle_name": "new_cat_fan",
        "email_address": "new_cat_fan@example.com",
        "password": "a long secret",
        "age": 30,
        "gender": 1,
    }
    created = sign_up(api, user)
    assert created["handle_name"] == "new_cat_fan" and "password" not in str(created)
    assert api.post("/v0/user", json=user).status_code == 409
    assert login(api, "new_cat_fan", "a long secret")
    short = api.post("/v0/user", json=user | {"handle_name": "other", "password": "short"})
    assert short.status_code == 422


def test_like_and_unlike_invalidate_cached_searches(api):
    token = login(api)
    body = {"phrases": ["イヌ"], "sort_by": "like"}
    before = search(api, token, body, limit=5)
    target = before["results"][-1]
    assert search(api, token, body, limit=5)["results"] == before["results"]  # cached
    assert api.post("/v0/like", json={"animal_id": target["id"]}, headers=token).status_code == 201
    again = api.post("/v0/like", json={"animal_id": target["id"]}, headers=token)
    assert again.status_code == 200  # liking twice changes nothing

    def like_count():
        hits = search(
            api,
            token,
            body | {"animal_subcategory_name_en": target["animal_subcategory_name_en"]},
            limit=200,
        )
        return next(h["like"] for h in hits["results"] if h["id"] == target["id"])

    wait_until(lambda: like_count() == target["like"] + 1)
    gone = api.delete("/v0/like", params={"animal_id": target["id"]}, headers=token)
    assert gone.status_code == 204
    wait_until(lambda: like_count() == target["like"])
    metrics = api.get("/metrics").text
    assert 'search_cache_requests_total{result="hit"}' in metrics


def test_a_cached_search_is_answered_only_to_a_request_the_route_accepts(api):
    from mlsys.aianimals.settings import auth_settings
    from mlsys.api.security import create_token

    token = login(api)
    body = {"phrases": ["ねこ"], "animal_category_name_en": "cat"}
    first = search(api, token, body, limit=7)
    hits = cache_count(api, "hit")
    again = search(api, token, body, limit=7)
    assert cache_count(api, "hit") == hits + 1
    assert again["search_id"] != first["search_id"]  # every answer has its own id
    assert again | {"search_id": ""} == first | {"search_id": ""}
    expired = auth_settings().model_copy(update={"token_minutes": -1})
    user_id = api.post(
        "/v0/user/login", json={"handle_name": "dog_leigh", "password": "password"}
    ).json()["user_id"]
    for headers in ({}, {"token": "forged"}, {"token": create_token(user_id, 0, expired)}):
        refused = api.post("/v0/animal/search", json=body, params={"limit": 7}, headers=headers)
        assert refused.status_code == 401, headers
    too_many = api.post("/v0/animal/search", json=body, params={"limit": 500}, headers=token)
    assert too_many.status_code == 422
    as_text = api.post(
        "/v0/animal/search",
        content=json.dumps(body).encode(),
        params={"limit": 7},
        headers=token | {"Content-Type": "text/plain"},
    )
    assert as_text.status_code == 422
    assert cache_count(api, "hit") == hits + 1  # none of those was answered from the cache


def test_spellings_of_one_search_are_one_cache_entry(api):
    """Issue 32, item 2: the key was the raw request, so `?junk=N` made every search a new
    entry (1,200 of them evicted the login counts from Redis)."""
    token = login(api)
    body = {"phrases": ["いぬ"], "animal_category_name_en": "dog"}
    search(api, token, body, limit=9)
    hits, misses = cache_count(api, "hit"), cache_count(api, "miss")
    spelled = json.dumps(dict(reversed(body.items())), indent=3).encode()
    for i in range(5):
        answer = api.post(
            "/v0/animal/search",
            content=spelled,
            params={"limit": "9", "offset": "0", "junk": str(i)},
            headers=token | {"Content-Type": "application/json; charset=utf-8"},
        )
        assert answer.status_code == 200
    assert (cache_count(api, "hit"), cache_count(api, "miss")) == (hits + 5, misses)


def test_an_unseeded_random_order_is_never_cached(api):
    token = login(api)
    body = {"phrases": ["ねこ"], "sort_by": "random"}
    bypassed = cache_count(api, "bypass")
    answers = [
        api.post("/v0/animal/search", json=body, params={"limit": 50}, headers=token)
        for _ in range(2)
    ]
    assert all(a.headers["cache-control"] == "no-store" for a in answers)
    orders = [[h["id"] for h in a.json()["results"]] for a in answers]
    assert orders[0] != orders[1]
    assert cache_count(api, "bypass") == bypassed + 2
    seeded = [search(api, token, body | {"seed": 7}, limit=50) for _ in range(2)]
    assert seeded[0]["results"] == seeded[1]["results"]


def test_a_user_removes_only_their_own_likes(api):
    me = api.post("/v0/user/login", json={"handle_name": "dog_leigh", "password": "password"})
    token, my_id = {"token": me.json()["token"]}, me.json()["user_id"]
    likes = api.get("/v0/like", params={"limit": 50}, headers=token).json()
    other = next(like for like in likes if like["user_id"] != my_id)
    params = {"animal_id": other["animal_id"], "user_id": other["user_id"]}
    response = api.delete("/v0/like", params=params, headers=token)
    assert response.status_code == 403 and "own likes" in response.json()["detail"]
    assert api.get("/v0/like", params=params, headers=token).json()  # still there


def test_a_posted_photo_becomes_searchable(api):
    token = login(api)
    form = {
        "name": "ソラ",
        "description": "ふわふわのサモエドの仔犬、はじめての雪",
        "animal_category_id": "2",
        "animal_subcategory_id": "30",
    }
    response = api.post(
        "/v0/animal", data=form, files={"photo": ("sora.png", PNG, "image/png")}, headers=token
    )
    assert response.status_code == 201, response.text
    posted = response.json()
    stored = api.get(posted["photo_url"])
    assert stored.headers["x-content-type-options"] == "nosniff"
    assert same_pixels(stored.content, PNG)  # re-encoded: the pixels, nothing else

    def found():
        hits = search(api, token, {"phrases": ["雪"], "animal_subcategory_name_ja": "サモエド"})
        return [h["id"] for h in hits["results"]] == [posted["id"]]

    wait_until(found)


@pytest.mark.parametrize(
    ("form", "photo", "status", "message"),
    [
        ({"animal_category_id": "1", "animal_subcategory_id": "30"}, PNG, 400, "not a breed"),
        (
            {"animal_category_id": "2", "animal_subcategory_id": "30"},
            b"GIF89a....",
            415,
            "PNG or JPEG",
        ),
    ],
)
def test_bad_posts_are_refused_and_nothing_is_stored(
    api, aianimals_home, form, photo, status, message
):
    token = login(api)
    uploads = aianimals_home / "storage" / "uploads"
    data = {"name": "x", "description": "y", **form}
    response = api.post("/v0/animal", data=data, files={"photo": ("p", photo)}, headers=token)
    assert response.status_code == status and message in response.text
    assert not uploads.exists() or not any(uploads.rglob("*.*"))


@pytest.mark.parametrize(
    ("params", "body"),
    [
        ({"limit": 201}, {}),
        ({"offset": -1}, {}),
        ({}, {"sort_by": "popularity"}),
        ({}, {"phrases": "ねこ"}),
        ({}, {"unknown": 1}),
    ],
)
def test_bad_search_input_is_a_clear_422(api, params, body):
    response = api.post("/v0/animal/search", json=body, params=params, headers=login(api))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"]


def test_health_metrics_and_docs(api):
    assert api.get("/v0/health-check").json() == {"health": "ok"}
    assert api.get("/v0/health-check/ready").status_code == 200
    assert api.get("/v0/docs").status_code == 200
    paths = api.get("/v0/openapi.json").json()["paths"]
    assert "/v0/animal/search" in paths and "/v0/user/login" in paths
    metrics = api.get("/metrics").text
    route = 'handler="/v0/health-check",'
    assert f'http_requests_total{{{route}method="GET",status="2xx"}}' in metrics
    assert f'http_request_duration_seconds_bucket{{{route}le="0.005",method="GET"}}' in metrics
    assert "outbox_waiting_messages" in metrics
    assert 'model_served_version{model="aianimals_search_ranker"}' in metrics  # 0: none yet


class GatedIndex:
    """The real search index, whose searches wait for the test to let them through."""

    def __init__(self, index):
        import threading

        self.index, self.gate, self.searches = index, threading.Event(), 0

    def search(self, query):
        self.searches += 1
        assert self.gate.wait(30)
        return self.index.search(query)


@pytest.fixture
def gated(aianimals_home):
    """The API (local profile) with its search index behind a gate, and its client."""
    from tests.helpers.http import serving_api

    with serving_api() as (client, server):
        state = server.server.config.app.state
        state.search_index = GatedIndex(state.search_index)
        yield client, state


def test_identical_searches_in_flight_are_computed_once(gated):
    from concurrent.futures import ThreadPoolExecutor

    api, state = gated
    token = login(api)
    body = {"phrases": ["ねこ"], "sort_by": "like"}
    before = {r: cache_count(api, r) for r in ("miss", "coalesced", "hit")}
    with ThreadPoolExecutor(5) as pool:
        answers = [pool.submit(search, api, token, body, limit=30) for _ in range(5)]
        time.sleep(1)  # all five arrive while the first is computing
        state.search_index.gate.set()
        answers = [a.result() for a in answers]
    assert state.search_index.searches == 1
    assert len({a["search_id"] for a in answers}) == 5
    assert all(a | {"search_id": ""} == answers[0] | {"search_id": ""} for a in answers)
    after = {r: cache_count(api, r) - before[r] for r in before}
    assert after["miss"] == 1 and after["coalesced"] >= 1
    assert after["coalesced"] + after["hit"] == 4


def test_a_search_after_an_invalidation_does_not_join_one_from_before(gated):
    from concurrent.futures import ThreadPoolExecutor

    api, state = gated
    token = login(api)
    body = {"phrases": ["いぬ"], "sort_by": "created_at"}
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(search, api, token, body, limit=30)
        wait_until(lambda: state.search_index.searches == 1)
        state.cache.invalidate()  # e.g. a like, while the first is computing
        second = pool.submit(search, api, token, body, limit=30)
        wait_until(lambda: state.search_index.searches == 2)  # computed on its own
        state.search_index.gate.set()
        assert first.result()["results"] == second.result()["results"]
