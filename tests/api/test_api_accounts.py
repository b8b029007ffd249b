"""Every authenticated route resolves the current, active user, and tokens can be revoked
(issue 10, item 11); handle names and addresses are unique whatever their case, and
registering reveals no address (item 13). Local profile; PostgreSQL in test_api_services."""

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, func, select, update

from mlsys.aianimals.database import get_engine
from mlsys.aianimals.settings import auth_settings
from mlsys.aianimals.tables import Animal, Registration, User
from mlsys.api.active_users import ActiveUsers
from mlsys.api.security import TokenClaims, create_token
from tests.helpers.aianimals import post_animal, wait_until
from tests.helpers.http import link_token, login, mailed, serving_api

SEARCH = {"phrases": ["ねこ"], "sort_by": "like"}


@pytest.fixture
def api(aianimals_home, monkeypatch):
    # Every request reads the user again: what another replica would see after its
    # remembered state expires (ActiveUsers' own test covers the remembering).
    monkeypatch.setenv("AUTH_USER_CACHE_SECONDS", "0")
    with serving_api() as (client, _):
        yield client


def register(api, handle=None, email=None, password="a long password", confirm=True) -> dict:
    """Sign up; with `confirm`, a sign-up accepted is confirmed by its mailed link."""
    handle = handle or f"user_{uuid.uuid4().hex[:12]}"
    body = {
        "handle_name": handle,
        "email_address": email or f"{handle}@example.com",
        "password": password,
        "age": 30,
        "gender": 1,
    }
    response = api.post("/v0/user", json=body)
    if confirm and response.status_code == 202:
        token = link_token(mailed(body["email_address"]))
        assert api.post("/v0/user/verify", json={"token": token}).status_code == 201
    return {"status": response.status_code, "json": response.json(), "handle": handle}


def authenticated_answers(api, token) -> dict[str, int]:
    """The status of each kind of authenticated route for `token`."""
    search = api.post("/v0/animal/search", json=SEARCH, headers=token)
    listed = api.get("/v0/animal", headers=token)
    log = {"search_id": uuid.uuid4().hex, "phrases": [], "action": "select", "animal_id": "0" * 32}
    logged = api.post("/v0/access_log", json=log, headers=token)
    liked = api.get("/v0/like", params={"animal_id": "0" * 32}, headers=token)
    return {
        "search": search.status_code,
        "list": listed.status_code,
        "access_log": logged.status_code,
        "likes": liked.status_code,
    }


def test_log_out_everywhere_revokes_every_token_on_every_route(api):
    user = register(api)
    first, second = (
        login(api, user["handle"], "a long password"),
        login(api, user["handle"], "a long password"),
    )
    before = authenticated_answers(api, first)  # the search is now cached
    assert before["search"] == before["list"] == 200
    assert api.post("/v0/user/logout", headers=second).status_code == 204
    for token in (first, second):
        answers = authenticated_answers(api, token)
        assert set(answers.values()) == {401}, answers  # the cached search too
    assert "revoked" in api.get("/v0/animal", headers=first).json()["detail"]
    again = login(api, user["handle"], "a long password")
    assert authenticated_answers(api, again)["search"] == 200


def test_a_password_change_revokes_earlier_tokens_and_answers_a_new_one(api):
    user = register(api)
    old = login(api, user["handle"], "a long password")
    wrong = api.put(
        "/v0/user/password",
        json={"password": "not it", "new_password": "another long one"},
        headers=old,
    )
    assert wrong.status_code == 401
    changed = api.put(
        "/v0/user/password",
        json={"password": "a long password", "new_password": "another long one"},
        headers=old,
    )
    assert changed.status_code == 200, changed.text
    assert api.get("/v0/animal", headers=old).status_code == 401
    assert api.get("/v0/animal", headers={"token": changed.json()["token"]}).status_code == 200
    old_login = {"handle_name": user["handle"], "password": "a long password"}
    assert api.post("/v0/user/login", json=old_login).status_code == 401
    assert login(api, user["handle"], "another long one")


def test_deactivating_an_account_revokes_it_and_takes_its_posts_out_of_search(api):
    user = register(api)
    token = login(api, user["handle"], "a long password")
    post_id = post_animal(api, token, "とらねこ", name="ごろう", category=2, subcategory=30)["id"]
    other = login(api)

    def found() -> bool:
        body = {"phrases": ["ごろう"]}
        answer = api.post("/v0/animal/search", json=body, headers=other).json()
        return post_id in {hit["id"] for hit in answer["results"]}

    wait_until(found)
    refused = api.post("/v0/user/deactivate", json={"password": "wrong"}, headers=token)
    assert refused.status_code == 401
    done = api.post("/v0/user/deactivate", json={"password": "a long password"}, headers=token)
    assert done.status_code == 204
    assert set(authenticated_answers(api, token).values()) == {401}
    credentials = {"handle_name": user["handle"], "password": "a long password"}
    assert api.post("/v0/user/login", json=credentials).status_code == 401
    wait_until(lambda: not found())
    with get_engine().connect() as connection:
        assert connection.scalar(select(Animal.deactivated).where(Animal.id == post_id))


def test_a_user_deactivated_in_the_database_or_unknown_is_refused(api):
    user = register(api)
    token = login(api, user["handle"], "a long password")
    with get_engine().begin() as connection:
        connection.execute(
            update(User).where(User.handle_name == user["handle"]).values(deactivated=True)
        )
    assert set(authenticated_answers(api, token).values()) == {401}
    unknown = {"token": create_token(uuid.uuid4().hex, 0, auth_settings())}
    assert set(authenticated_answers(api, unknown).values()) == {401}


def test_tokens_without_a_version_are_refused(api):
    import jwt

    from mlsys.api.security import ALGORITHM

    user_id = api.post(
        "/v0/user/login", json={"handle_name": "dog_leigh", "password": "password"}
    ).json()["user_id"]
    secret = auth_settings().secret_key.get_secret_value()
    legacy = jwt.encode({"sub": user_id, "exp": 2**40}, secret, algorithm=ALGORITHM)
    assert api.get("/v0/animal", headers={"token": legacy}).status_code == 401


def test_active_users_remember_for_their_interval_and_forget_on_request(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'users.db'}")
    User.metadata.create_all(engine, tables=[User.__table__])
    with engine.begin() as connection:
        connection.execute(
            User.__table__.insert(),
            {"id": "u", "handle_name": "u", "email_address": "u@x", "password_hash": "h",
             "age": 1, "gender": 0, "deactivated": False, "created_at": datetime.now(UTC),
             "token_version": 3},
        )  # fmt: skip
    remembering, reading = ActiveUsers(engine, seconds=60), ActiveUsers(engine, seconds=0)

    def accepts(users: ActiveUsers, claims: TokenClaims) -> bool:
        return asyncio.run(users.accept(claims))

    current, stale = TokenClaims("u", 3), TokenClaims("u", 2)
    assert accepts(remembering, current) and accepts(reading, current)
    assert not accepts(reading, stale)
    with engine.begin() as connection:
        connection.execute(update(User).values(token_version=4))
    assert accepts(remembering, current)  # within its interval: what it read
    assert not accepts(reading, current)
    remembering.forget("u")
    assert not accepts(remembering, current)
    assert not accepts(reading, TokenClaims("nobody", 0))


def test_handles_and_addresses_are_unique_whatever_their_case(api):
    assert register(api, handle="Dog_Leigh")["status"] == 409
    assert register(api, handle="DOG_LEIGH", email="new@example.com")["json"] == {
        "detail": "this handle name is already taken"
    }
    assert login(api, "DOG_LEIGH")  # logging in, the case does not matter either


def test_signing_up_tells_nobody_whether_an_address_is_known(api):
    """Item 13: a known and an unknown address get the same answer, and neither a login
    with the password given nor the handle's availability afterwards tells them apart;
    only the address's mailbox learns (a link, or a note that it has an account)."""
    with get_engine().connect() as connection:
        known = connection.scalar(select(User.email_address).where(User.handle_name == "dog_leigh"))
        users_before = connection.scalar(select(func.count()).select_from(User))
    taken = register(api, email=known.upper(), confirm=False)
    fresh = register(api, email=f"new_{uuid.uuid4().hex[:8]}@example.com", confirm=False)
    assert taken["status"] == fresh["status"] == 202
    assert taken["json"].keys() == fresh["json"].keys()
    for attempt in (taken, fresh):
        # Nobody logs in before the link comes back; the handle is held either way.
        credentials = {"handle_name": attempt["handle"], "password": "a long password"}
        assert api.post("/v0/user/login", json=credentials).status_code == 401
        other = f"other_{uuid.uuid4().hex[:8]}@example.com"
        assert register(api, handle=attempt["handle"].upper(), email=other)["status"] == 409
    with get_engine().connect() as connection:
        assert connection.scalar(select(func.count()).select_from(User)) == users_before
    note = mailed(known.upper())
    assert link_token(note) is None and "already has an account" in note["Subject"]
    token = link_token(mailed(fresh["json"]["email_address"]))
    assert token
    assert api.post("/v0/user/verify", json={"token": token[:-1] + "x"}).status_code == 404
    assert api.post("/v0/user/verify", json={"token": token}).status_code == 201
    assert api.post("/v0/user/verify", json={"token": token}).status_code == 404  # used
    assert login(api, fresh["handle"], "a long password")


def test_a_link_expires_and_its_handle_is_free_again(api, monkeypatch):
    user = register(api, confirm=False)
    token = link_token(mailed(user["json"]["email_address"]))
    with get_engine().begin() as connection:
        connection.execute(update(Registration).values(expires_at=datetime.now(UTC)))
    assert api.post("/v0/user/verify", json={"token": token}).status_code == 404
    again = register(api, handle=user["handle"], email=f"again_{user['handle']}@example.com")
    assert again["status"] == 202  # and confirmed
    assert login(api, user["handle"], "a long password")


def test_an_address_that_got_an_account_meanwhile_is_not_registered_twice(api):
    address = f"twice_{uuid.uuid4().hex[:8]}@example.com"
    first = register(api, email=address, confirm=False)
    first_token = link_token(mailed(address))
    assert register(api, email=address.upper(), confirm=False)["status"] == 202
    second_token = link_token(mailed(address, count=2))  # a link too: no account yet
    assert api.post("/v0/user/verify", json={"token": second_token}).status_code == 201
    refused = api.post("/v0/user/verify", json={"token": first_token})
    assert refused.status_code == 409 and "has an account already" in refused.text
    credentials = {"handle_name": first["handle"], "password": "a long password"}
    assert api.post("/v0/user/login", json=credentials).status_code == 401


def test_the_case_of_a_handle_buys_no_more_guesses(api):
    user = register(api)
    for variant in [user["handle"].upper(), user["handle"].title()] * 3:
        api.post("/v0/user/login", json={"handle_name": variant, "password": "wrong"})
    right = {"handle_name": user["handle"], "password": "a long password"}
    assert api.post("/v0/user/login", json=right).status_code == 429
