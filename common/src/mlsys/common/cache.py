"""Response cache with generation-based invalidation: in-process (local) or Redis.

Every entry is stored with the generation it was computed in, and `invalidate()` bumps the
generation, which turns every older entry into a miss at once (no key scans). A lookup
returns the current generation with the entry (one round trip to Redis); the caller
stores what it then computes under that generation, so a value computed while an
invalidation happened is never served as fresh.
"""

import threading
import time
from collections import OrderedDict
from functools import cache
from typing import Protocol

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from mlsys.common.logging import get_logger
from mlsys.common.settings import Profile, platform_settings, redis_settings

log = get_logger(__name__)

REQUEST_PATH_TIMEOUT_SECONDS = 0.5
# What a failed lookup returns: nothing is ever stored under it (a real one is b"0" or more).
UNKNOWN_GENERATION = b""


class Cache(Protocol):
    def lookup(self, key: str) -> tuple[bytes | None, bytes]:
        """The entry if fresh (else None), and the current generation."""

    def store(self, key: str, value: bytes, generation: bytes) -> None: ...

    def invalidate(self) -> None: ...

    # The same for the API's event loop: a cache hit never waits in the thread pool.
    async def alookup(self, key: str) -> tuple[bytes | None, bytes]: ...

    async def astore(self, key: str, value: bytes, generation: bytes) -> None: ...

    async def aclose(self) -> None: ...


class InProcessCache:
    """A bounded LRU with a TTL, for one process (the local profile)."""

    def __init__(self, ttl_seconds: float, max_entries: int = 10_000):
        self.ttl, self.max_entries = ttl_seconds, max_entries
        self._entries: OrderedDict[str, tuple[float, bytes, bytes]] = OrderedDict()
        self._generation = 0
        self._lock = threading.Lock()

    def lookup(self, key: str) -> tuple[bytes | None, bytes]:
        with self._lock:
            generation = str(self._generation).encode()
            entry = self._entries.get(key)
            if entry is None or entry[0] < time.monotonic() or entry[1] != generation:
                return None, generation
            self._entries.move_to_end(key)
            return entry[2], generation

    def store(self, key: str, value: bytes, generation: bytes) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + self.ttl, generation, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._entries.clear()

    async def alookup(self, key: str) -> tuple[bytes | None, bytes]:
        return self.lookup(key)  # memory only: nothing to wait for

    async def astore(self, key: str, value: bytes, generation: bytes) -> None:
        self.store(key, value, generation)

    async def aclose(self) -> None:
        pass


class RedisCache:
    """Redis, shared by every API replica. The API's lookups and stores (async) never fail
    a request: when Redis is slow or unreachable they count as misses and the search is
    computed. `invalidate()` raises instead, so that its caller (a consumer) retries."""

    def __init__(self, url: str, prefix: str, ttl_seconds: int):
        self.client = redis.Redis.from_url(url)
        # Connects on first use, in the event loop that uses it (the API's). No retries and
        # a short timeout: waiting longer for a cache than the search itself takes is a loss.
        self.async_client = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=REQUEST_PATH_TIMEOUT_SECONDS,
            socket_connect_timeout=REQUEST_PATH_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
        self.prefix, self.ttl = prefix, ttl_seconds
        self._answering = True
        self.generation_key = f"{prefix}cache:generation"

    def _fresh(self, generation: bytes | None, entry: bytes | None) -> tuple[bytes | None, bytes]:
        generation = generation or b"0"
        if entry is None:
            return None, generation
        stored_generation, _, value = entry.partition(b"\n")
        return (value if stored_generation == generation else None), generation

    def lookup(self, key: str) -> tuple[bytes | None, bytes]:
        return self._fresh(*self.client.mget(self.generation_key, self._key(key)))

    def store(self, key: str, value: bytes, generation: bytes) -> None:
        self.client.set(self._key(key), generation + b"\n" + value, ex=self.ttl)

    async def alookup(self, key: str) -> tuple[bytes | None, bytes]:
        try:
            found = self._fresh(*await self.async_client.mget(self.generation_key, self._key(key)))
        except redis.RedisError as error:
            self._report(error)
            return None, UNKNOWN_GENERATION
        self._report(None)
        return found

    async def astore(self, key: str, value: bytes, generation: bytes) -> None:
        if generation == UNKNOWN_GENERATION:
            return
        try:
            await self.async_client.set(self._key(key), generation + b"\n" + value, ex=self.ttl)
        except redis.RedisError as error:
            self._report(error)

    def _report(self, error: redis.RedisError | None) -> None:
        """Log when Redis stops and starts answering, not once per request."""
        if (error is None) != self._answering:
            self._answering = error is None
            if error is None:
                log.info("cache: Redis answers again")
            else:
                log.warning("cache: Redis does not answer, searches are computed: %s", error)

    async def aclose(self) -> None:
        await self.async_client.aclose()
        self.client.close()

    def invalidate(self) -> None:
        self.client.incr(self.generation_key)

    def _key(self, key: str) -> str:
        return f"{self.prefix}cache:{key}"


@cache
def _in_process_cache(ttl: int) -> InProcessCache:
    return InProcessCache(ttl)


def get_cache() -> Cache:
    """The cache of the configured profile: Redis, or the one in-process cache (shared by
    the API and the indexer thread of the local profile)."""
    settings = redis_settings()
    if platform_settings().profile is Profile.services:
        return RedisCache(settings.url(), settings.key_prefix, settings.cache_ttl_seconds)
    return _in_process_cache(settings.cache_ttl_seconds)
