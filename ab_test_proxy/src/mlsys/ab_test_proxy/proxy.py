"""The proxy: the app's requests go through it to the API. A search is given a variant
(random by weight, or sticky by user), answered by that variant (its order, its
API) and labelled with it (`X-AB-Variant`); the access logs the app sends back about that
search are labelled too (`model_name` = experiment:variant), so that the report can
compare the variants on what users did. Everything else passes through unchanged.

The proxy is where the app's requests enter. It tells the API who called: X-Forwarded-For
is the address that connected to it, after what a trusted ingress in front of it said
(a client's own is dropped; the API believes the header from trusted proxies alone). It
refuses what the variant could be read from differently than the API reads it (two
tokens, a path with dot segments), and bounds the bodies it reads."""

import base64
import hashlib
import json
import random
from collections import OrderedDict
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.datastructures import Headers

from mlsys.ab_test_proxy.config import Experiment, Mode, Variant
from mlsys.aianimals.answers import search_id_of
from mlsys.aianimals.photos import MAX_UPLOAD_BYTES
from mlsys.common.metrics import HttpMetrics, HttpMetricsMiddleware
from mlsys.common.serving import BodyLimit, Networks, answer, within

SEARCH = "/v0/animal/search"
ACCESS_LOG = "/v0/access_log"
API_METRICS = "/metrics"
REMEMBERED_SEARCHES = 100_000  # search_id -> variant, for the access logs that follow
# Hop-by-hop headers, and those httpx sets itself, are not forwarded.
_DROPPED = {"host", "content-length", "connection", "keep-alive", "transfer-encoding",
            "te", "upgrade", "proxy-authorization", "proxy-connection"}  # fmt: skip
# Who called is the proxy's to say, never the client's.
_FORWARDING = {"forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
               "x-real-ip"}  # fmt: skip
_NOT_PASSED_ON = frozenset(name.encode() for name in _DROPPED | _FORWARDING)  # ASGI's bytes
CREDENTIALS = ("token", "authorization")

# The proxy's own registry: only its metrics on /ab/metrics.
METRICS = CollectorRegistry()
REQUESTS = Counter(
    "ab_requests_total",
    "Searches per variant and answer status",
    ["variant", "status"],
    registry=METRICS,
)
SECONDS = Histogram(
    "ab_request_duration_seconds",
    "Search latency through the proxy, per variant",
    ["variant"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=METRICS,
)
LABELLED = Counter(
    "ab_access_logs_total",
    "Access logs labelled with their search's variant",
    ["variant"],
    registry=METRICS,
)
HTTP = HttpMetrics(METRICS)  # every request the proxy answers, by route


def _bucket(key: str) -> float:
    """A stable point in [0, 1) for a key (the same on every replica and restart)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


def user_of(headers) -> str | None:
    """The user id (`sub`) of the token the app sends, read without checking the
    signature: only to assign a variant; the API checks the token."""
    raw = headers.get("token") or headers.get("authorization", "").removeprefix("Bearer ")
    parts = raw.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return None
    subject = payload.get("sub") if isinstance(payload, dict) else None
    return subject if isinstance(subject, str) else None


def _json_object(body: bytes) -> dict | None:
    """The request's JSON object, or None (the API answers what is not one)."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python goes
        return None
    return payload if isinstance(payload, dict) else None


def _canonical(path: str) -> bool:
    """Whether a path has no dot segments and no empty ones (but a trailing slash): the
    only spelling under which the proxy routes a request as the API does."""
    segments = path.split("/")[1:]
    return all(s not in ("", ".", "..") for s in segments[:-1]) and segments[-1:] not in (
        ["."],
        [".."],
    )


def _target(upstream: str, scope) -> str:
    """The upstream URL of a request: its path and query as the client sent them
    (percent-encoded), never decoded and encoded again."""
    path = scope.get("raw_path") or scope["path"].encode()
    query = scope.get("query_string", b"")
    target = upstream.rstrip("/") + path.decode("latin-1")
    return f"{target}?{query.decode('latin-1')}" if query else target


class Assigner:
    def __init__(self, experiment: Experiment, rng: random.Random | None = None):
        self.experiment = experiment
        self.rng = rng or random.Random()
        self.cumulative = []
        total = 0.0
        for share in experiment.shares():
            total += share
            self.cumulative.append(total)

    def _pick(self, point: float) -> Variant:
        for variant, edge in zip(self.experiment.variants, self.cumulative, strict=True):
            if point < edge:
                return variant
        return self.experiment.variants[-1]

    def assign(self, user_id: str | None) -> Variant:
        """The variant of a request: by mode; a request without a token in `user` mode is
        drawn at random."""
        if self.experiment.mode is Mode.user and user_id:
            return self._pick(_bucket(f"{self.experiment.name}:user:{user_id}"))
        return self._pick(self.rng.random())


class SearchVariants:
    """search_id -> variant of the most recent searches (bounded)."""

    def __init__(self, size: int = REMEMBERED_SEARCHES):
        self.size, self._variants = size, OrderedDict[str, str]()

    def remember(self, search_id: str, variant: str) -> None:
        self._variants[search_id] = variant
        if len(self._variants) > self.size:
            self._variants.popitem(last=False)

    def variant_of(self, search_id: str) -> str | None:
        return self._variants.get(search_id)


def create_app(
    experiment: Experiment,
    transport: httpx.AsyncBaseTransport | None = None,
    trusted: Networks = (),
):
    """The proxy; `trusted`: the proxies in front of it whose X-Forwarded-For it passes on
    (an ingress controller), else it is the edge and says who connected."""
    assigner, searches = Assigner(experiment), SearchVariants()
    variants = {v.name: v for v in experiment.variants}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # Idle connections to the API are dropped after 2 s, before uvicorn's 5 s keep-alive
        # closes them from its side: a request sent on a connection the API is closing
        # would fail (a 502) although the API is up.
        limits = httpx.Limits(keepalive_expiry=2.0)
        async with httpx.AsyncClient(transport=transport, timeout=30, limits=limits) as client:
            app.state.client = client
            yield

    app = FastAPI(
        title="AIAnimals A/B test proxy",
        description=f"Experiment `{experiment.name}` ({experiment.mode} split): "
        + ", ".join(
            f"{v.name} {s:.0%}"
            for v, s in zip(experiment.variants, experiment.shares(), strict=True)
        ),
        lifespan=lifespan,
        docs_url="/ab/docs",
        openapi_url="/ab/openapi.json",
    )

    async def get_client(request: Request) -> httpx.AsyncClient:
        return request.app.state.client

    Client = Annotated[httpx.AsyncClient, Depends(get_client)]

    async def forward(client: httpx.AsyncClient, request: Request, upstream: str,
                      body: bytes) -> Response:  # fmt: skip
        # The headers as the client sent them, bytes for bytes and each one (repeated ones
        # too), less the white space around a value, which is not part of it (RFC 9110,
        # 5.5) and which the proxy's HTTP client refuses to send.
        headers = [(name, value.strip(b" \t")) for name, value in request.scope["headers"]
                   if name not in _NOT_PASSED_ON]  # fmt: skip
        peer = request.client.host if request.client else None
        # Who called: the peer; behind a trusted ingress, what it says first.
        chain = [*request.headers.getlist("x-forwarded-for")] if within(peer, trusted) else []
        if peer:
            headers.append((b"x-forwarded-for", ", ".join([*chain, peer]).encode("latin-1")))
        try:
            answer = await client.request(
                request.method, _target(upstream, request.scope), headers=headers, content=body
            )
        except httpx.TimeoutException:
            return JSONResponse({"detail": "the API did not answer in time"}, 504)
        except httpx.TransportError:
            return JSONResponse({"detail": "the API is unavailable, try again"}, 502)
        kept = {k: v for k, v in answer.headers.items() if k.lower() not in _DROPPED
                and k.lower() != "content-encoding"}  # fmt: skip
        if "location" in kept and kept["location"].startswith(upstream.rstrip("/") + "/"):
            # A redirect names the path, never the API's address inside the deployment.
            kept["location"] = kept["location"][len(upstream.rstrip("/")) :]
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    @app.get("/ab/health")
    async def health() -> dict:
        """Liveness of the proxy, and its experiment."""
        return {"health": "ok", "experiment": experiment.name, "mode": experiment.mode}

    @app.get("/ab/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(METRICS), media_type=CONTENT_TYPE_LATEST)

    @app.post(SEARCH)
    async def search(request: Request, client: Client) -> Response:
        body = await request.body()
        payload = _json_object(body)
        variant = assigner.assign(user_of(request.headers))
        if payload is not None and variant.sort_by is not None:
            body = json.dumps({**payload, "sort_by": variant.sort_by}).encode()
        with SECONDS.labels(variant.name).time():
            answer = await forward(client, request, variant.upstream or experiment.upstream, body)
        REQUESTS.labels(variant.name, str(answer.status_code)).inc()
        search_id = search_id_of(answer.body)
        if search_id is not None:
            searches.remember(search_id, variant.name)
        answer.headers["X-AB-Experiment"] = experiment.name
        answer.headers["X-AB-Variant"] = variant.name
        return answer

    @app.post(ACCESS_LOG)
    async def access_log(request: Request, client: Client) -> Response:
        body = await request.body()
        payload = _json_object(body)
        search_id = payload.get("search_id") if payload else None
        variant = searches.variant_of(search_id) if isinstance(search_id, str) else None
        if payload is not None:  # the label is the proxy's alone: a client's is dropped
            labelled = {k: v for k, v in payload.items() if k != "model_name"}
            if variant is not None:
                labelled["model_name"] = experiment.label(variants[variant])
                LABELLED.labels(variant).inc()
            body = json.dumps(labelled).encode()
        return await forward(client, request, experiment.upstream, body)

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"],
                   include_in_schema=False)  # fmt: skip
    async def everything_else(request: Request, client: Client) -> Response:
        if request.url.path == API_METRICS:  # for Prometheus inside, not for the app
            return JSONResponse({"detail": "Not Found"}, 404)
        return await forward(client, request, experiment.upstream, await request.body())

    app.add_middleware(RefuseAmbiguous)
    # Nothing over the largest body the API takes is read (by its Content-Length, and
    # while it streams in, for a body without one).
    app.add_middleware(BodyLimit, limit=lambda method, path: MAX_UPLOAD_BYTES)
    app.add_middleware(HttpMetricsMiddleware, metrics=HTTP)  # outermost: refusals counted
    return app


class RefuseAmbiguous:
    """Pure ASGI: a request the variant could be read from differently than the API reads
    it (two credentials, a path with dot or empty segments) is a 400."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            headers = Headers(scope=scope)
            if any(len(headers.getlist(name)) > 1 for name in CREDENTIALS):
                await answer(send, 400, "send one credential: one token or Authorization header")
                return
            if not _canonical(scope["path"]):
                await answer(send, 400, "a path without empty or dot segments")
                return
        await self.app(scope, receive, send)
