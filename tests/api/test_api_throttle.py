"""Login throttling (issue 10, item 2): past the failures allowed per account or per client
in a window, logins answer 429 with Retry-After, even with the right password; Redis keeps
the counts in the services profile, so every API replica sees them."""

import time

import pytest
import redis

from mlsys.aianimals.settings import AuthSettings
from mlsys.api.throttle import InProcessCounts, LoginThrottle, RedisCounts
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


def test_the_window_ends():
    counts = InProcessCounts()
    counts.fail("k", window_seconds=1)
    assert counts.retry_after("k", limit=1) == 1
    time.sleep(1.1)
    assert counts.retry_after("k", limit=1) == 0


@pytest.mark.integration
def test_redis_counts_are_shared_and_expire(redis_prefix):
    settings = AuthSettings(login_failures_per_account=2, login_window_seconds=2)
    replicas = [LoginThrottle(RedisCounts(redis.Redis(), redis_prefix), settings) for _ in range(2)]
    replicas[0].failed("dog_leigh", "10.0.0.1")
    replicas[1].failed("Dog_Leigh", "10.0.0.2")  # another replica, another client
    assert 1 <= replicas[0].retry_after("dog_leigh", "10.0.0.3") <= 2
    time.sleep(2.2)
    assert replicas[1].retry_after("dog_leigh", "10.0.0.3") == 0


@pytest.mark.integration
def test_an_unreachable_redis_does_not_lock_anyone_out(redis_prefix):
    from tests.helpers.services import free_port

    client = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    throttle = LoginThrottle(RedisCounts(client, redis_prefix), AuthSettings())
    throttle.failed("dog_leigh", "10.0.0.1")
    assert throttle.retry_after("dog_leigh", "10.0.0.1") == 0
