"""Search responses cached whole, and served before FastAPI does any per-request work.

Solving the route's dependencies and validating its parameters cost more CPU than
answering from the cache (measured: about 240 of a cached search's 380 µs), so a hit is
answered by the route's handler before them. The key is the raw request: everything the
answer depends on (query string, content type, body bytes), not the token, since a search
answers the same for every user. Only responses the whole route produced are stored, so
only requests it validated are ever answered early, and the token is still checked on
every hit. A miss, a bad token or an unusual request simply goes through FastAPI.

Each response carries its own `search_id` (access logs refer to it): the cache holds the
response without it, and every answer gets a fresh one.
"""

import hashlib
from collections.abc import Awaitable, Callable
from uuid import uuid4

from fastapi import Request, Response
from fastapi.routing import APIRoute

from mlsys.api import metrics
from mlsys.api.security import InvalidToken, presented_token, user_id_from_token

_ID_PREFIX = b'{"search_id":"'
_ID_END = len(_ID_PREFIX) + 32 + len(b'",')  # a uuid4 hex is 32 characters


def search_response(rest: bytes) -> Response:
    """A JSON answer: a new search_id, then `rest`, the serialized fields after it (which
    starts after the opening brace, e.g. b'"hits":3,...}')."""
    body = _ID_PREFIX + uuid4().hex.encode() + b'",' + rest
    return Response(body, media_type="application/json")


def _key(request: Request, body: bytes) -> str:
    headers = request.headers
    raw = b"\0".join(
        (request.scope["query_string"], headers.get("content-type", "").encode(), body)
    )
    return "search:" + hashlib.sha256(raw).hexdigest()


def _authenticated(request: Request) -> bool:
    headers = request.headers
    raw = presented_token(headers.get("token"), headers.get("authorization"))
    if raw is None:
        return False
    try:
        user_id_from_token(raw, request.app.state.auth)
    except InvalidToken:
        return False
    return True


class CachedSearchRoute(APIRoute):
    """The search route with its response cache (app.state.cache) in front. A response
    with `Cache-Control: no-store` (an unseeded random order) is never stored."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handle = super().get_route_handler()

        async def cached_or_handled(request: Request) -> Response:
            if not _authenticated(request):
                return await handle(request)  # FastAPI answers 401 as for any route
            cache = request.app.state.cache
            key = _key(request, await request.body())
            rest, generation = await cache.alookup(key)
            if rest is not None:
                metrics.SEARCH_CACHE.labels("hit").inc()
                return search_response(rest)
            response = await handle(request)
            if response.status_code != 200:
                return response
            if "no-store" in response.headers.get("cache-control", ""):
                metrics.SEARCH_CACHE.labels("bypass").inc()
                return response
            metrics.SEARCH_CACHE.labels("miss").inc()
            await cache.astore(key, bytes(response.body[_ID_END:]), generation)
            return response

        return cached_or_handled
