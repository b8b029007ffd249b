"""Text a database or a JSON answer cannot hold (a NUL, a lone surrogate) is a clear 422
wherever a client can send it, never a 500 (issue 10, item 10)."""

import json

import pytest

from tests.helpers.aianimals import PNG
from tests.helpers.http import login

LONE_SURROGATE, NUL = "\ud83d", "\x00"


@pytest.mark.parametrize("bad", [LONE_SURROGATE, NUL], ids=["surrogate", "nul"])
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v0/user/login", lambda bad: {"handle_name": f"dog{bad}", "password": "x"}),
        ("POST", "/v0/user/login", lambda bad: {"handle_name": "dog_leigh", "password": bad}),
        ("POST", "/v0/animal/search", lambda bad: {"phrases": [f"ねこ{bad}"]}),
        ("POST", "/v0/animal/search", lambda bad: {"animal_category_name_en": bad}),
        (
            "POST",
            "/v0/access_log",
            lambda bad: {
                "search_id": "a" * 32,
                "animal_id": "b" * 32,
                "action": "select",
                "phrases": [bad],
            },
        ),
        (
            "POST",
            "/v0/user",
            lambda bad: {
                "handle_name": "newcomer",
                "email_address": f"n{bad}@example.com",
                "password": "long enough",
                "age": 30,
                "gender": 0,
            },
        ),
    ],
    ids=[
        "login-name",
        "login-password",
        "search-phrase",
        "search-filter",
        "access-log",
        "register",
    ],
)
def test_bodies_with_unstorable_text_are_422(api, method, path, body, bad):
    raw = json.dumps(body(bad))  # ASCII with \\u escapes: how a lone surrogate travels
    headers = {**login(api), "content-type": "application/json"}
    response = api.request(method, path, content=raw, headers=headers)
    assert response.status_code == 422, response.text
    assert "NUL" in response.text or "surrogate" in response.text or "email" in response.text


def test_queries_forms_and_paths_with_a_nul_are_422(api):
    token = login(api)
    assert api.get("/v0/animal_category", params={"name_en": NUL}, headers=token).status_code == 422
    assert api.get("/v0/photos/%00").status_code == 422
    form = {"name": f"x{NUL}", "description": "y", "animal_category_id": "2",
            "animal_subcategory_id": "30"}  # fmt: skip
    response = api.post("/v0/animal", data=form, files={"photo": ("p.png", PNG)}, headers=token)
    assert response.status_code == 422 and "NUL" in response.text


def test_a_search_past_the_result_window_is_a_clear_422(api):
    token = login(api)
    deep = api.post(
        "/v0/animal/search", json={}, params={"offset": 9_950, "limit": 100}, headers=token
    )
    assert deep.status_code == 422  # in the shape 422s declare (issue 32, item 21)
    (error,) = deep.json()["detail"]
    assert error["loc"] == ["query", "offset"]
    assert "offset + limit must be at most 10000" in error["msg"]
    edge = api.post(
        "/v0/animal/search", json={}, params={"offset": 9_900, "limit": 100}, headers=token
    )
    assert edge.status_code == 200 and edge.json()["results"] == []
    declared = api.get("/v0/openapi.json").json()["paths"]["/v0/animal/search"]["post"]
    schema = declared["responses"]["422"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/HTTPValidationError"}


def test_a_search_engine_error_is_a_503_that_says_so(api, aianimals_home):
    import sqlite3

    token = login(api)
    with sqlite3.connect(aianimals_home / "search.sqlite") as index:
        index.execute("DROP TABLE changes")  # what a corrupt or replaced file gives
    broken = api.post("/v0/animal/search", json={"phrases": ["ねこ"]}, headers=token)
    assert broken.status_code == 503
    assert broken.json() == {"detail": "the search engine is unavailable, try again"}
