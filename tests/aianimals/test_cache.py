"""The response cache: hits, invalidation by generation, and no stale value stored late."""

import time

import pytest
import redis

from mlsys.aianimals.cache import UNKNOWN_GENERATION, InProcessCache, RedisCache
from tests.helpers.services import free_port

KEY = b"k" * 32


@pytest.fixture(params=["in-process", "redis"])
def cache(request):
    if request.param == "in-process":
        return InProcessCache(ttl_seconds=60)
    prefix = request.getfixturevalue("redis_prefix")
    return RedisCache("redis://127.0.0.1:6379/0", prefix, ttl_seconds=60, mac_key=KEY)


def test_a_stored_value_is_a_hit(cache):
    value, generation = cache.lookup("k")
    assert value is None
    cache.store("k", b'{"hits":1}', generation)
    assert cache.lookup("k") == (b'{"hits":1}', generation)


def test_invalidate_turns_every_entry_into_a_miss(cache):
    for key in ("a", "b"):
        cache.store(key, b"v", cache.lookup(key)[1])
    cache.invalidate()
    assert cache.lookup("a")[0] is None and cache.lookup("b")[0] is None


def test_a_value_computed_before_an_invalidation_is_never_served(cache):
    _, generation = cache.lookup("k")  # a request starts computing ...
    cache.invalidate()  # ... a like changes the index meanwhile ...
    cache.store("k", b"stale", generation)  # ... and the old result is stored late
    assert cache.lookup("k")[0] is None


def test_entries_expire():
    cache = InProcessCache(ttl_seconds=0.05)
    cache.store("k", b"v", cache.lookup("k")[1])
    time.sleep(0.1)
    assert cache.lookup("k")[0] is None


@pytest.mark.integration
def test_redis_entries_have_a_ttl_and_live_under_the_prefix(redis_prefix):
    client = redis.Redis()
    cache = RedisCache("redis://127.0.0.1:6379/0", redis_prefix, ttl_seconds=30, mac_key=KEY)
    cache.store("k", b"v", cache.lookup("k")[1])
    assert 0 < client.ttl(f"{redis_prefix}cache:k") <= 30
    assert all(
        key.startswith(redis_prefix.encode()) for key in client.scan_iter(f"{redis_prefix}*")
    )


def test_async_lookups_see_what_sync_stores(cache):
    import asyncio

    async def roundtrip():
        value, generation = await cache.alookup("a")
        assert value is None
        await cache.astore("a", b"v", generation)
        assert (await cache.alookup("a"))[0] == b"v"
        cache.invalidate()
        value = (await cache.alookup("a"))[0]
        await cache.aclose()
        return value

    assert asyncio.run(roundtrip()) is None


def test_an_unreachable_redis_is_a_miss_for_the_api_and_an_error_for_invalidation(caplog):
    import asyncio

    cache = RedisCache(
        f"redis://127.0.0.1:{free_port()}/0", "unreachable:", ttl_seconds=60, mac_key=KEY
    )

    async def two_requests():
        found = [await cache.alookup("k") for _ in range(2)]
        await cache.astore("k", b"v", found[0][1])  # nothing is stored, nothing raised
        await cache.aclose()
        return found

    assert asyncio.run(two_requests()) == [(None, UNKNOWN_GENERATION)] * 2
    warnings = [r for r in caplog.records if "does not answer" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not per request
    # A consumer must not believe the cache was invalidated: it retries the message.
    with pytest.raises(redis.ConnectionError):
        cache.invalidate()


# --- near copies in the API process (Redis) ----------------------------------------------


async def _until(condition, seconds: float) -> float:
    """Seconds until `condition()` (an awaitable) is true; fails after `seconds`."""
    import asyncio

    start = time.monotonic()
    while not await condition():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds} s")
        await asyncio.sleep(0.005)
    return time.monotonic() - start


def _near_copy_scenario(redis_prefix, scenario):
    import asyncio

    url = "redis://127.0.0.1:6379/0"
    client = redis.Redis()

    async def run():
        api = RedisCache(url, redis_prefix, ttl_seconds=60, mac_key=KEY)
        consumer = RedisCache(
            url, redis_prefix, ttl_seconds=60, mac_key=KEY
        )  # another process, in effect

        async def listening():
            return api.hears_invalidations

        await api.alookup("warm")  # the first lookup starts the listener
        await _until(listening, 5)
        try:
            await scenario(api, consumer, client, listening)
        finally:
            await api.aclose()

    asyncio.run(run())


@pytest.mark.integration
def test_near_copies_answer_without_redis_and_follow_invalidations(redis_prefix):
    from mlsys.aianimals.cache import NEAR_COPY_SECONDS

    async def scenario(api, consumer, client, _):
        _, generation = await api.alookup("k")
        await api.astore("k", b"v", generation)
        client.delete(f"{redis_prefix}cache:k")  # only the near copy is left
        assert (await api.alookup("k"))[0] == b"v"
        consumer.invalidate()

        async def gone():
            return (await api.alookup("k"))[0] is None

        # Announced, not expired: far sooner than a near copy's lifetime.
        assert await _until(gone, 1) < NEAR_COPY_SECONDS / 3

    _near_copy_scenario(redis_prefix, scenario)


@pytest.mark.integration
def test_near_copies_are_unused_while_invalidations_cannot_be_heard(redis_prefix):
    async def scenario(api, consumer, client, listening):
        _, generation = await api.alookup("k")
        await api.astore("k", b"v", generation)
        client.delete(f"{redis_prefix}cache:k")
        assert (await api.alookup("k"))[0] == b"v"
        client.client_kill_filter(_type="pubsub")  # the channel is lost ...
        consumer.invalidate()  # ... and this announcement with it

        async def unused():
            return (await api.alookup("k"))[0] is None

        await _until(unused, 1)  # the near copy is not served once the loss is noticed
        await _until(listening, 5)  # subscribed again: near copies are back in use
        _, generation = await api.alookup("k2")
        await api.astore("k2", b"v2", generation)
        client.delete(f"{redis_prefix}cache:k2")
        assert (await api.alookup("k2"))[0] == b"v2"
        assert (await api.alookup("k"))[0] is None

    _near_copy_scenario(redis_prefix, scenario)


@pytest.mark.integration
def test_bytes_written_straight_into_redis_are_never_served(redis_prefix):
    """Issue 10, item 6: a value written into Redis by someone else was served to users."""
    client = redis.Redis()
    cache = RedisCache("redis://127.0.0.1:6379/0", redis_prefix, ttl_seconds=60, mac_key=KEY)
    _, generation = cache.lookup("search:x")
    client.set(f"{redis_prefix}cache:search:x", generation + b"\n" + b'{"hits":666}')
    assert cache.lookup("search:x")[0] is None
    forged = RedisCache("redis://127.0.0.1:6379/0", redis_prefix, ttl_seconds=60, mac_key=b"x")
    forged.store("search:x", b'{"hits":666}', generation)  # the right format, another key
    assert cache.lookup("search:x")[0] is None
    cache.store("search:x", b'{"hits":1}', generation)
    stored = client.get(f"{redis_prefix}cache:search:x")
    client.set(f"{redis_prefix}cache:search:x", stored.replace(b'"hits":1', b'"hits":7'))
    assert cache.lookup("search:x")[0] is None  # tampered
    cache.store("search:x", b'{"hits":1}', generation)
    assert cache.lookup("search:x")[0] == b'{"hits":1}'


def test_the_in_process_cache_is_bounded_in_bytes():
    """Issue 32, item 2: 4,000 distinct searches grew the near copies by 395 MB."""
    cache = InProcessCache(ttl_seconds=60, max_bytes=50_000)
    generation = cache.lookup("k")[1]
    for i in range(100):
        cache.store(f"k{i}", bytes(10_000), generation)
        cache.store(f"k{i}", bytes(10_000), generation)  # replaced, not counted twice
    assert cache.size_bytes == 50_000
    assert cache.lookup("k99")[0] is not None and cache.lookup("k94")[0] is None
    cache.store("huge", bytes(50_001), generation)  # never held: it would empty the rest
    assert cache.lookup("huge")[0] is None and cache.size_bytes == 50_000
