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

from mlsys.common.settings import Profile, platform_settings, redis_settings


class Cache(Protocol):
    def lookup(self, key: str) -> tuple[bytes | None, bytes]:
        """The entry if fresh (else None), and the current generation."""

    def store(self, key: str, value: bytes, generation: bytes) -> None: ...

    def invalidate(self) -> None: ...


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


class RedisCache:
    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int):
        self.client, self.prefix, self.ttl = client, prefix, ttl_seconds
        self.generation_key = f"{prefix}cache:generation"

    def lookup(self, key: str) -> tuple[bytes | None, bytes]:
        generation, entry = self.client.mget(self.generation_key, self._key(key))
        generation = generation or b"0"
        if entry is None:
            return None, generation
        stored_generation, _, value = entry.partition(b"\n")
        return (value if stored_generation == generation else None), generation

    def store(self, key: str, value: bytes, generation: bytes) -> None:
        self.client.set(self._key(key), generation + b"\n" + value, ex=self.ttl)

    def invalidate(self) -> None:
        self.client.incr(self.generation_key)

    def _key(self, key: str) -> str:
        return f"{self.prefix}cache:{key}"


@cache
def _cache_for(profile: Profile, url: str, prefix: str, ttl: int) -> Cache:
    if profile is Profile.services:
        return RedisCache(redis.Redis.from_url(url), prefix, ttl)
    return InProcessCache(ttl)


def get_cache() -> Cache:
    """The cache of the configured profile, one per process and configuration."""
    settings = redis_settings()
    return _cache_for(
        platform_settings().profile, settings.url(), settings.key_prefix, settings.cache_ttl_seconds
    )
