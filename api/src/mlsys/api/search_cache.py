"""Search responses cached whole, and served before FastAPI does any per-request work.

Solving the route's dependencies and validating its parameters cost more CPU than
answering from the cache (measured: about 240 of a cached search's 380 µs), so a hit is
answered by the route's handler before them. The key is what the answer depends on, as
validated (the body's search, the page in the query string), not the token, since a
search answers the same for every user: junk in a query string or a body spelled another
way is no new entry. Only responses the whole route produced are stored, so
only requests it validated are ever answered early, and the token (signature, expiry,
revocation, active user) is still checked on every hit. A miss, a bad token or an
unusual request simply goes through FastAPI.

Each response carries its own `search_id` (access logs refer to it): the cache holds the
response without it, and every answer gets a fresh one.
"""

import asyncio
import hashlib
import json
from collections.abc import Callable, Coroutine
from typing import Any
from uuid import uuid4

from fastapi import Request, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError

from mlsys.aianimals.answers import SEARCH_ID_LENGTH, SEARCH_ID_PREFIX
from mlsys.api import metrics
from mlsys.api.schemas import DEFAULT_LIMIT, Page, SearchRequest
from mlsys.api.security import signed_claims

_ID_END = len(SEARCH_ID_PREFIX) + SEARCH_ID_LENGTH + len(b'",')


def search_response(rest: bytes) -> Response:
    """A JSON answer: a new search_id, then `rest`, the serialized fields after it (which
    starts after the opening brace, e.g. b'"hits":3,...}')."""
    body = SEARCH_ID_PREFIX + uuid4().hex.encode() + b'",' + rest
    return Response(body, media_type="application/json")


def _key(request: Request, body: bytes) -> str | None:
    """The key of a search: its parameters as validated, so that no other spelling of one
    search (spaces, key order, a query parameter the route ignores) is a new entry. None:
    a request the cache leaves to FastAPI (not JSON, or not valid: FastAPI says why)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        return None
    query = request.query_params  # the route reads these two, the last of each, as here
    try:
        search = SearchRequest.model_validate_json(body)
        page = Page.model_validate(
            {"limit": query.get("limit", DEFAULT_LIMIT), "offset": query.get("offset", 0)}
        )
    except ValidationError:
        return None
    raw = json.dumps([search.model_dump(mode="json"), page.model_dump()], sort_keys=True)
    return "search:" + hashlib.sha256(raw.encode()).hexdigest()


def _storable(response: Response) -> bytes | None:
    """What the cache keeps of a response: a 200 without `Cache-Control: no-store`."""
    if response.status_code != 200 or "no-store" in response.headers.get("cache-control", ""):
        return None
    return bytes(response.body[_ID_END:])


class CachedSearchRoute(APIRoute):
    """The search route with its response cache (app.state.cache) in front. A response
    with `Cache-Control: no-store` (an unseeded random order) is never stored.

    Identical misses in flight at once, in one generation, are computed once: after an
    invalidation every hot search would otherwise be computed by each of its concurrent
    requests. Joining only in the same generation keeps a request that arrives after an
    invalidation from being answered with what was computed before it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()
        # The storable answer (or None) of each search being computed in this process.
        in_flight: dict[tuple[str, bytes], asyncio.Future[bytes | None]] = {}

        async def computed(
            request: Request, key: str, generation: bytes
        ) -> tuple[Response, bytes | None]:
            response = await handle(request)
            rest = _storable(response)
            if response.status_code == 200:
                metrics.SEARCH_CACHE.labels("miss" if rest is not None else "bypass").inc()
            if rest is not None:
                await request.app.state.cache.astore(key, rest, generation)
            return response, rest

        async def cached_or_handled(request: Request) -> Response:
            claims = signed_claims(request.headers, request.app.state.auth)
            if claims is None or not await request.app.state.users.accept(claims):
                return await handle(request)  # FastAPI answers 401 as for any route
            key = _key(request, await request.body())
            if key is None:
                return await handle(request)
            rest, generation = await request.app.state.cache.alookup(key)
            if rest is not None:
                metrics.SEARCH_CACHE.labels("hit").inc()
                return search_response(rest)
            flight = (key, generation)
            if flight in in_flight:
                rest = await asyncio.shield(in_flight[flight])
                if rest is not None:
                    metrics.SEARCH_CACHE.labels("coalesced").inc()
                    return search_response(rest)
                return (await computed(request, key, generation))[0]  # not storable: our own
            answer = in_flight[flight] = asyncio.get_running_loop().create_future()
            rest = None
            try:
                response, rest = await computed(request, key, generation)
            finally:
                del in_flight[flight]
                answer.set_result(rest)  # None: those waiting compute their own
            return response

        return cached_or_handled
