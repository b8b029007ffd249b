"""What every server reports, written once. Its requests (rate, errors, duration), under
the names and labels prometheus-fastapi-instrumentator gives them, so that the ecosystem's
dashboards and alert rules read them unchanged:

- `http_requests_total{handler, method, status}`: `handler` is the route template
  (`/v0/animal/{animal_id}`, never the path a client chose: bounded cardinality), `none`
  for a request no route took; `status` is the class (`2xx`, `4xx`, `5xx`);
- `http_request_duration_seconds{handler, method}`: latency up to the response's start.

A server makes one `HttpMetrics` for its registry at import and adds
`HttpMetricsMiddleware` outermost, so that requests its other layers refuse are counted.

And the models it serves (`SERVED_MODELS`, in the default registry; a server with a
registry of its own registers it there too): each `ChampionWatch`'s version, 0 while it
serves none, and when that version was registered (its age: `time() - ...`).
"""

import weakref
from collections.abc import Iterator
from time import perf_counter
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Finer than the instrumentator's (0.1, 0.5, 1): the API's searches answer in milliseconds
# and a p99 alert needs buckets around its goal.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
UNMATCHED = "none"  # the instrumentator's handler for a request no route took


class HttpMetrics:
    """The two metrics, registered once in `registry`."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        # Each series' child, looked up once: `labels()` costs 2 of the 3 µs a request's
        # observation takes. Handlers are route templates, so the keys are few.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self.requests = Counter(
            "http_requests_total",
            "Requests by handler (route template), method and status class",
            ["handler", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Request latency by handler (route template) and method",
            ["handler", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, handler: str, method: str, status: int, seconds: float) -> None:
        key = (handler, method, status // 100)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                self.requests.labels(handler, method, f"{status // 100}xx"),
                self.duration.labels(handler, method),
            )
        series[0].inc()
        series[1].observe(seconds)


class HttpMetricsMiddleware:
    """Pure ASGI (no task per request as BaseHTTPMiddleware makes): times every HTTP
    request; one that raised counts as a 500, as the server answers it."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = perf_counter(), [500]

        async def send_and_record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            route = getattr(scope.get("route"), "path", None)
            self.metrics.observe(
                route or UNMATCHED, scope["method"], status[0], perf_counter() - start
            )


class ServedModels(Collector):
    """Read at scrape time from the process's champion watches (held weakly: a watch that
    is gone is no longer reported); one series per model, a watch serving a version first."""

    def __init__(self) -> None:
        self._watches: weakref.WeakSet[Any] = weakref.WeakSet()

    def add(self, watch: Any) -> None:
        """`watch` has `model_name`, `version` (None: serves none) and `registered_at`."""
        self._watches.add(watch)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        version = GaugeMetricFamily(
            "model_served_version", "The registered version served (0: none)", labels=["model"]
        )
        registered = GaugeMetricFamily(
            "model_served_registered_timestamp_seconds",
            "When the served version was registered (its age: time() minus this)",
            labels=["model"],
        )
        by_model: dict[str, Any] = {}
        for watch in list(self._watches):
            if watch.version is not None or watch.model_name not in by_model:
                by_model[watch.model_name] = watch
        for name, watch in sorted(by_model.items()):
            version.add_metric([name], watch.version or 0)
            if watch.version is not None and watch.registered_at is not None:
                registered.add_metric([name], watch.registered_at)
        yield version
        yield registered


SERVED_MODELS = ServedModels()
REGISTRY.register(SERVED_MODELS)
