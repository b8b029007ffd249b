"""Login throttling (issue 10, item 2; issue 32, items 2 and 11): past the failures allowed
per account or per client in a window, logins answer 429 with Retry-After, even with the
right password. The account is the user an identifier resolves to; the counts live in the
database (every replica sees them; no cache evicts them). Behind the proxy: tests/
ab_test_proxy/test_proxy_edge.py; on PostgreSQL: tests/api/test_api_services.py."""

from datetime import UTC, datetime, timedelta

import pytest

from mlsys.aianimals.settings import AuthSettings
from mlsys.aianimals.throttle import LoginThrottle
from tests.helpers.http import serving_api


@pytest.fixture
def throttled_api(aianimals_home, monkeypatch):
    monkeypatch.setenv("AUTH_LOGIN_FAILURES_PER_ACCOUNT", "3")
    monkeypatch.setenv("AUTH_LOGIN_FAILURES_PER_CLIENT", "6")
    with serving_api() as (client, _):
        yield client


def attempt(api, handle_name: str, password: str):
    return api.post("/v0/user/login", json={"handle_name": handle_name, "password": password})


def test_an_account_is_locked_after_its_failures_even_for_the_right_password(throttled_api):
    api = throttled_api
    assert [attempt(api, "dog_leigh", "guess").status_code for _ in range(3)] == [401] * 3
    locked = attempt(api, "dog_leigh", "password")
    assert locked.status_code == 429 and 0 < int(locked.headers["retry-after"]) <= 900
    assert "try again in" in locked.json()["detail"]
    assert attempt(api, "DOG_LEIGH", "password").status_code == 429  # the account, any case


def test_a_client_is_throttled_across_accounts(throttled_api, aianimals_home):
    from sqlalchemy import select

    from mlsys.aianimals.database import get_engine
    from mlsys.aianimals.tables import User

    with get_engine().connect() as connection:
        handles = connection.scalars(select(User.handle_name).limit(7)).all()
    api = throttled_api
    assert [attempt(api, handle, "guess").status_code for handle in handles[:6]] == [401] * 6
    assert attempt(api, handles[6], "password").status_code == 429


def test_a_success_clears_the_account_count(throttled_api):
    api = throttled_api
    for _ in range(2):
        assert attempt(api, "dog_leigh", "guess").status_code == 401
    assert attempt(api, "dog_leigh", "password").status_code == 200
    for _ in range(2):
        assert attempt(api, "dog_leigh", "guess").status_code == 401
    assert attempt(api, "dog_leigh", "password").status_code == 200  # 2 < 3 again


def test_a_handle_and_an_address_count_as_one_account(throttled_api, aianimals_home):
    from sqlalchemy import select

    from mlsys.aianimals.database import get_engine
    from mlsys.aianimals.tables import User

    with get_engine().connect() as connection:
        address = connection.scalar(
            select(User.email_address).where(User.handle_name == "dog_leigh")
        )
    api = throttled_api
    assert [attempt(api, "dog_leigh", "guess").status_code for _ in range(2)] == [401] * 2
    by_address = {"email_address": address.upper(), "password": "guess"}
    assert api.post("/v0/user/login", json=by_address).status_code == 401
    assert attempt(api, "dog_leigh", "password").status_code == 429  # 3 guesses, one account


def test_a_window_that_ended_counts_nothing_and_starts_again(aianimals_home):
    from sqlalchemy import func, select, update

    from mlsys.aianimals.database import get_engine
    from mlsys.aianimals.tables import LoginFailure

    engine = get_engine()
    settings = AuthSettings(login_failures_per_account=2, login_failures_per_client=2)
    throttle = LoginThrottle(settings)
    with engine.begin() as connection:
        for _ in range(2):
            throttle.failed(connection, "account-1", "10.0.0.1")
    with engine.begin() as connection:
        assert 890 < throttle.retry_after(connection, "account-1", None) <= 900
        # the client, any account
        assert throttle.retry_after(connection, "account-2", "10.0.0.1") > 0
        connection.execute(  # the window ends
            update(LoginFailure).values(window_ends=datetime.now(UTC) - timedelta(seconds=1))
        )
    with engine.begin() as connection:
        assert throttle.retry_after(connection, "account-1", "10.0.0.1") == 0
        throttle.failed(connection, "account-1", None)  # a new window; the ended rows go
        assert throttle.retry_after(connection, "account-1", None) == 0
    with engine.connect() as connection:
        rows = connection.execute(select(LoginFailure.key, LoginFailure.failures)).all()
        assert rows == [("login:account:account-1", 1)]
        assert connection.scalar(select(func.count()).select_from(LoginFailure)) == 1


def test_many_logins_at_once_all_answer(aianimals_home):
    """Found by the soak: the throttle took a second pooled connection while the login held
    one, so once every connection was held by a login waiting for another (64 at once),
    none answered. Each login now counts on its own connection."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    # A connection per request: 64 threads sharing kept-alive connections raced the
    # client's own pool (a socket closed under another thread's read: EBADF), not the API.
    one_shot = httpx.Limits(max_keepalive_connections=0)
    with (
        serving_api() as (_, server),
        httpx.Client(base_url=server.url, timeout=30, limits=one_shot) as api,
        ThreadPoolExecutor(64) as pool,
    ):
        answers = list(pool.map(lambda _: attempt(api, "dog_leigh", "password"), range(64)))
        guesses = list(pool.map(lambda _: attempt(api, "cat_lover", "guess"), range(64)))
    assert [answer.status_code for answer in answers] == [200] * 64
    assert {answer.status_code for answer in guesses} <= {401, 429}
