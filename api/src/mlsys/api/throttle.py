"""Login throttling: failed logins are counted per account and per client in a window;
past the limit, logins answer 429 with Retry-After until the window ends, even with the
right password. A success clears the account's count.

Redis keeps the counts in the services profile (every API replica sees the same ones),
a dictionary in the local profile. When Redis does not answer, logins are not throttled
(logged): an outage of the cache must not lock every user out.
"""

import threading
import time
from typing import Protocol

import redis

from mlsys.aianimals.settings import AuthSettings
from mlsys.common.logging import get_logger
from mlsys.common.settings import Profile, platform_settings, redis_settings

log = get_logger(__name__)


class FailureCounts(Protocol):
    def retry_after(self, key: str, limit: int) -> int:
        """Seconds until `key` may try again (0: now)."""

    def fail(self, key: str, window_seconds: int) -> None: ...

    def clear(self, key: str) -> None: ...


class InProcessCounts:
    def __init__(self):
        self._counts: dict[str, tuple[int, float]] = {}  # key -> (failures, window end)
        self._lock = threading.Lock()

    def retry_after(self, key: str, limit: int) -> int:
        with self._lock:
            failures, ends = self._counts.get(key, (0, 0.0))
            left = ends - time.monotonic()
            if left <= 0:
                self._counts.pop(key, None)
                return 0
            return max(int(left) + 1, 1) if failures >= limit else 0

    def fail(self, key: str, window_seconds: int) -> None:
        with self._lock:
            failures, ends = self._counts.get(key, (0, 0.0))
            if ends <= time.monotonic():
                failures, ends = 0, time.monotonic() + window_seconds
            self._counts[key] = (failures + 1, ends)

    def clear(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)


class RedisCounts:
    def __init__(self, client: redis.Redis, prefix: str):
        self.client, self.prefix = client, prefix

    def retry_after(self, key: str, limit: int) -> int:
        pipe = self.client.pipeline()
        pipe.get(self.prefix + key)
        pipe.ttl(self.prefix + key)
        try:
            failures, ttl = pipe.execute()
        except redis.RedisError as error:
            log.warning("login throttle unavailable error=%r", error)
            return 0
        return max(int(ttl), 1) if failures is not None and int(failures) >= limit else 0

    def fail(self, key: str, window_seconds: int) -> None:
        pipe = self.client.pipeline()
        pipe.incr(self.prefix + key)
        pipe.expire(self.prefix + key, window_seconds, nx=True)  # the first failure's window
        try:
            pipe.execute()
        except redis.RedisError as error:
            log.warning("login throttle unavailable error=%r", error)

    def clear(self, key: str) -> None:
        try:
            self.client.delete(self.prefix + key)
        except redis.RedisError as error:
            log.warning("login throttle unavailable error=%r", error)


class LoginThrottle:
    def __init__(self, counts: FailureCounts, settings: AuthSettings):
        self.counts, self.settings = counts, settings

    @staticmethod
    def _keys(account: str, client: str) -> tuple[str, str]:
        return f"login:account:{account.strip().lower()}", f"login:client:{client}"

    def retry_after(self, account: str, client: str) -> int:
        account_key, client_key = self._keys(account, client)
        return max(
            self.counts.retry_after(account_key, self.settings.login_failures_per_account),
            self.counts.retry_after(client_key, self.settings.login_failures_per_client),
        )

    def failed(self, account: str, client: str) -> None:
        for key in self._keys(account, client):
            self.counts.fail(key, self.settings.login_window_seconds)

    def succeeded(self, account: str, client: str) -> None:
        self.counts.clear(self._keys(account, client)[0])


def login_throttle(settings: AuthSettings) -> LoginThrottle:
    if platform_settings().profile is Profile.services:
        redis_config = redis_settings()
        client = redis.Redis.from_url(
            redis_config.url(), socket_timeout=0.5, socket_connect_timeout=0.5
        )
        return LoginThrottle(RedisCounts(client, redis_config.key_prefix), settings)
    return LoginThrottle(InProcessCounts(), settings)
