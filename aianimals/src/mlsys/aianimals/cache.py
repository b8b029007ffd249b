"""Response cache with generation-based invalidation: in-process (local) or Redis.

Every entry is stored with the generation it was computed in, and `invalidate()` bumps the
generation, which turns every older entry into a miss at once (no key scans). A lookup
returns the current generation with the entry (one round trip to Redis); the caller
stores what it then computes under that generation, so a value computed while an
invalidation happened is never served as fresh.

With Redis, each API process also keeps near copies of the entries it served, so that a
hit costs no round trip. They are only used while the process follows the generation:
`invalidate()` publishes each new generation on a channel that a listener task in every
API process subscribes to. The price is a delay of one message delivery (well under a
millisecond next to Redis) before other processes stop serving the old entries; near
copies also expire after a few seconds, which bounds it if the channel breaks silently.
"""

import asyncio
import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from functools import cache
from typing import Protocol, cast

import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from mlsys.aianimals.settings import auth_settings
from mlsys.common.logging import get_logger
from mlsys.common.settings import Profile, platform_settings, redis_settings

log = get_logger(__name__)

REQUEST_PATH_TIMEOUT_SECONDS = 0.5
NEAR_COPY_SECONDS = 3
# What one API process holds of answers: the local profile's cache, Redis's near copies
# (Redis itself is bounded by its maxmemory).
LOCAL_CACHE_BYTES = 64 * 1024 * 1024
NEAR_COPY_BYTES = 32 * 1024 * 1024
# What a failed lookup returns: nothing is ever stored under it (a real one is b"0" or more).
UNKNOWN_GENERATION = b""


class Cache(Protocol):
    def lookup(self, key: str) -> tuple[bytes | None, bytes]:
        """The entry if fresh (else None), and the current generation."""

    def store(self, key: str, value: bytes, generation: bytes) -> None: ...

    def invalidate(self) -> None: ...

    # The same for the API's event loop: a cache hit never waits in the thread pool.
    async def alookup(self, key: str) -> tuple[bytes | None, bytes]:
        """As lookup, but never raises: the generation is UNKNOWN_GENERATION when the
        cache could not be asked, and `astore` then keeps nothing."""

    async def astore(self, key: str, value: bytes, generation: bytes) -> None: ...

    async def aclose(self) -> None: ...


class InProcessCache:
    """An LRU with a TTL, for one process (the local profile, and the near copies),
    bounded in bytes: searches differ without end, and their answers in size."""

    def __init__(self, ttl_seconds: float, max_bytes: int = LOCAL_CACHE_BYTES):
        self.ttl, self.max_bytes = ttl_seconds, max_bytes
        self._entries: OrderedDict[str, tuple[float, bytes, bytes]] = OrderedDict()
        self._bytes = 0  # of the values held
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
        if len(value) > self.max_bytes:
            return
        with self._lock:
            replaced = self._entries.pop(key, None)
            if replaced is not None:
                self._bytes -= len(replaced[2])
            self._entries[key] = (time.monotonic() + self.ttl, generation, value)
            self._bytes += len(value)
            while self._bytes > self.max_bytes:
                self._bytes -= len(self._entries.popitem(last=False)[1][2])

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def _clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def invalidate(self) -> None:
        with self._lock:
            self._generation += 1
            self._clear()

    def move_to(self, generation: int) -> None:
        """Adopt a generation kept elsewhere (Redis): entries of any other are dropped."""
        with self._lock:
            if generation != self._generation:
                self._generation = generation
                self._clear()

    async def alookup(self, key: str) -> tuple[bytes | None, bytes]:
        return self.lookup(key)  # memory only: nothing to wait for

    async def astore(self, key: str, value: bytes, generation: bytes) -> None:
        self.store(key, value, generation)

    async def aclose(self) -> None:
        pass


# The new generation and its announcement in one atomic step: listeners never miss one.
_INVALIDATE = """
local generation = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], generation)
return generation
"""


class RedisCache:
    """Redis, shared by every API replica, with near copies in each API process (see the
    module's docstring). The API's lookups and stores (async) never fail a request: when
    Redis is slow or unreachable they count as misses and the search is computed.
    `invalidate()` raises instead, so that its caller (a consumer) retries."""

    def __init__(self, url: str, prefix: str, ttl_seconds: int, *, mac_key: bytes):
        self.client = redis.Redis.from_url(url)
        # Entries carry a keyed MAC: whoever can write to Redis cannot make the API serve
        # bytes it did not store itself (a forged entry is a miss).
        self._mac_key = mac_key
        # Connects on first use, in the event loop that uses it (the API's). No retries and
        # a short timeout: waiting longer for a cache than the search itself takes is a loss.
        self.async_client = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=REQUEST_PATH_TIMEOUT_SECONDS,
            socket_connect_timeout=REQUEST_PATH_TIMEOUT_SECONDS,
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),
        )
        self.prefix, self.ttl = prefix, ttl_seconds
        self._answering = True
        self.generation_key = f"{prefix}cache:generation"
        self.channel = f"{prefix}cache:invalidations"
        self._invalidate = self.client.register_script(_INVALIDATE)
        self._near = InProcessCache(min(NEAR_COPY_SECONDS, ttl_seconds), NEAR_COPY_BYTES)
        self._following: int | None = None  # the generation heard last; None: not listening
        self._listener: asyncio.Task | None = None
        self._closing = False

    def _mac(self, key: str, generation: bytes, value: bytes) -> bytes:
        message = key.encode() + b"\0" + generation + b"\0" + value
        return hmac.new(self._mac_key, message, hashlib.sha256).hexdigest().encode()

    def _entry(self, key: str, value: bytes, generation: bytes) -> bytes:
        return generation + b"\n" + self._mac(key, generation, value) + b"\n" + value

    def _fresh(self, key: str, values: list) -> tuple[bytes | None, bytes]:
        """The entry if stored by us in the current generation, and that generation, from
        the MGET of both (bytes: the clients do not decode responses)."""
        generation, entry = cast(list[bytes | None], values)
        generation = generation or b"0"
        if entry is None:
            return None, generation
        parts = entry.split(b"\n", 2)
        if len(parts) != 3 or parts[0] != generation:  # not ours, or of an older generation
            return None, generation
        stored_generation, mac, value = parts
        if not hmac.compare_digest(mac, self._mac(key, stored_generation, value)):
            log.warning("cache entry with a wrong MAC ignored key=%s", key)
            return None, generation
        return value, generation

    def lookup(self, key: str) -> tuple[bytes | None, bytes]:
        return self._fresh(key, self.client.mget(self.generation_key, self._key(key)))

    def store(self, key: str, value: bytes, generation: bytes) -> None:
        self.client.set(self._key(key), self._entry(key, value, generation), ex=self.ttl)

    async def alookup(self, key: str) -> tuple[bytes | None, bytes]:
        if self._listener is None:  # the first lookup runs in the event loop to listen in
            self._listener = asyncio.create_task(self._follow_generation())
        if self._following is not None:
            near, generation = self._near.lookup(key)
            if near is not None:
                return near, generation
        try:
            found = self._fresh(
                key, await self.async_client.mget(self.generation_key, self._key(key))
            )
        except redis.RedisError as error:
            self._report(error)
            return None, UNKNOWN_GENERATION
        self._report(None)
        value, generation = found
        if value is not None and self._following is not None:
            self._near.store(key, value, generation)
        return found

    async def astore(self, key: str, value: bytes, generation: bytes) -> None:
        if generation == UNKNOWN_GENERATION:
            return
        if self._following is not None:
            self._near.store(key, value, generation)
        try:
            await self.async_client.set(
                self._key(key), self._entry(key, value, generation), ex=self.ttl
            )
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

    @property
    def hears_invalidations(self) -> bool:
        """Whether near copies are in use: this process follows the generation."""
        return self._following is not None

    async def _follow_generation(self) -> None:
        """Keep the near copies' generation equal to Redis's; stop using them whenever the
        channel is lost, until subscribed again."""
        while not self._closing:
            try:
                async with self.async_client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    await self._listen(pubsub)
            except redis.RedisError as error:
                if self._following is not None:
                    log.warning("cache: invalidations unheard, near copies unused: %s", error)
                self._following = None
                await asyncio.sleep(1)
        self._following = None

    async def _listen(self, pubsub: redis.asyncio.client.PubSub) -> None:
        # Short waits, not one endless one: redis-py can swallow a cancellation, so
        # aclose() also sets _closing, seen here within a second.
        while not self._closing:
            message = await pubsub.get_message(timeout=1)
            if message is None:
                continue
            if message["type"] == "subscribe":
                # Subscribed before reading the generation: no announcement falls between.
                generation = await self.async_client.get(self.generation_key)
                self._hear(cast(bytes | None, generation) or b"0")
            elif message["type"] == "message":
                # An announcement and the first read can arrive in either order.
                self._hear(message["data"], newer_only=True)

    def _hear(self, generation: bytes, newer_only: bool = False) -> None:
        heard = int(generation)
        if newer_only and self._following is not None and heard <= self._following:
            return
        self._near.move_to(heard)
        self._following = heard

    async def aclose(self) -> None:
        if self._listener is not None:
            self._closing = True
            self._listener.cancel()
            await asyncio.wait([self._listener])
        await self.async_client.aclose()
        self.client.close()

    def invalidate(self) -> None:
        generation = self._invalidate(keys=[self.generation_key], args=[self.channel])
        if self._following is not None:  # this process need not wait for its own message
            self._hear(str(generation).encode(), newer_only=True)

    def _key(self, key: str) -> str:
        return f"{self.prefix}cache:{key}"


def mac_key() -> bytes:
    """The cache's MAC key, derived from AUTH_SECRET_KEY (one secret, used for one purpose
    each: tokens are signed with the key itself)."""
    secret = auth_settings().secret_key.get_secret_value().encode()
    return hmac.new(secret, b"mlsys response cache MAC", hashlib.sha256).digest()


@cache
def _in_process_cache(ttl: int) -> InProcessCache:
    return InProcessCache(ttl)


def get_cache() -> Cache:
    """The cache of the configured profile: Redis, or the one in-process cache (shared by
    the API and the indexer thread of the local profile)."""
    settings = redis_settings()
    if platform_settings().profile is Profile.services:
        return RedisCache(
            settings.url(), settings.key_prefix, settings.cache_ttl_seconds, mac_key=mac_key()
        )
    return _in_process_cache(settings.cache_ttl_seconds)
