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

A worker that is no HTTP server (a consumer, the relay) serves the default registry on
METRICS_PORT (`serve_worker_metrics`); so does a Streamlit app, whose pages are counted and
timed (`measured_page`: `streamlit_page_runs_total{page, outcome}`,
`streamlit_page_run_duration_seconds{page}`). A batch job lives too briefly to be scraped: its
command, decorated with `job`, pushes its run to the Pushgateway at
METRICS_PUSHGATEWAY_URL when it ends, grouped by `job` (`<component>-<command>`):
`job_duration_seconds`, `job_success` (1 or 0), `job_last_success_timestamp_seconds` or
`job_last_failure_timestamp_seconds`, and what the job reports (`report_items`: `job_items`,
the rows or items it handled; `report`: a figure of its own).
"""

import functools
import time
import weakref
from collections.abc import Callable, Iterator
from time import perf_counter
from typing import Any, ParamSpec, TypeVar

import click
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    pushadd_to_gateway,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlsys.common.logging import get_logger
from mlsys.common.settings import metrics_settings

log = get_logger(__name__)

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


# --- Streamlit apps -----------------------------------------------------------------------

# A Streamlit app (the BI, the review portal) answers on a websocket, not with a request per
# page: its unit of work is a page's run, which every click and widget change repeats.
PAGE_RUNS = Counter(
    "streamlit_page_runs_total", "Runs of a Streamlit page by outcome (ok, error)",
    ["page", "outcome"],
)  # fmt: skip
PAGE_RUN_DURATION = Histogram(
    "streamlit_page_run_duration_seconds", "How long a Streamlit page's run took", ["page"],
    buckets=LATENCY_BUCKETS,
)  # fmt: skip


def measured_page(page: Callable[[], None]) -> Callable[[], None]:
    """`page` (a function of `st.Page`), counted and timed under its name less `_page`. A
    run that raised is an error; one that `st.stop()` or a rerun ended (Streamlit's
    control flow, BaseException) is not."""
    name = page.__name__.removesuffix("_page")
    runs = {outcome: PAGE_RUNS.labels(name, outcome) for outcome in ("ok", "error")}
    duration = PAGE_RUN_DURATION.labels(name)

    @functools.wraps(page)  # Streamlit names the page's URL after the function
    def run() -> None:
        start, outcome = perf_counter(), "ok"
        try:
            page()
        except Exception:
            outcome = "error"
            raise
        finally:
            duration.observe(perf_counter() - start)
            runs[outcome].inc()

    return run


# --- workers and jobs ---------------------------------------------------------------------


def serve_worker_metrics() -> None:
    """Serve the default registry's `/metrics` on METRICS_PORT (unset: nothing), from a
    thread of its own, for a worker that is no HTTP server."""
    port = metrics_settings().port
    if port is not None:
        start_http_server(port)
        log.info("metrics on port=%d", port)


P = ParamSpec("P")
R = TypeVar("R")
# What a job's run pushes: name -> documentation. Declared once (`job_figure`), so that
# what dashboards and alert rules may query is known (tests/deploy/test_monitoring.py).
JOB_FIGURES: dict[str, str] = {}
_running: list[dict[str, float]] = []  # the running job's reported figures


def job_figure(name: str, documentation: str) -> str:
    """Declares a figure a job pushes (a gauge in its group); returns its name."""
    JOB_FIGURES[name] = documentation
    return name


JOB_DURATION = job_figure("job_duration_seconds", "How long the job's last run took")
JOB_SUCCESS = job_figure("job_success", "1 if the job's last run succeeded, 0 if it failed")
JOB_LAST_SUCCESS = job_figure("job_last_success_timestamp_seconds", "When the job last succeeded")
JOB_LAST_FAILURE = job_figure("job_last_failure_timestamp_seconds", "When the job last failed")
JOB_ITEMS = job_figure("job_items", "Rows or items the job's last run handled")


def report(figure: str, value: float) -> None:
    """A declared figure of the running job, pushed with its run."""
    if figure not in JOB_FIGURES:
        raise ValueError(f"{figure!r} is not declared with job_figure")
    if _running:
        _running[-1][figure] = value


def report_items(count: int) -> None:
    """The rows or items the running job handled."""
    report(JOB_ITEMS, count)


def job(command: Callable[P, R]) -> Callable[P, R]:
    """Decorates a batch job's command (`mlsys.<component>.__main__`): when it ends, its
    run is pushed to the Pushgateway as job `<component>-<command>`. An exit code other than
    0 or an exception is a failure. A push that fails is logged and changes nothing: the
    job's outcome is its own."""
    # The package, `mlsys.<component>`, also when run as `python -m` (module `__main__`)
    package = command.__globals__.get("__package__") or command.__module__
    component = package.removeprefix("mlsys.").split(".")[0].replace("_", "-")
    name = f"{component}-{command.__name__.replace('_', '-')}"

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        figures: dict[str, float] = {}
        _running.append(figures)
        start, succeeded = perf_counter(), False
        try:
            result = command(*args, **kwargs)
            succeeded = True
            return result
        except click.exceptions.Exit as exit_:  # typer.Exit
            succeeded = exit_.exit_code == 0
            raise
        except SystemExit as exit_:
            succeeded = exit_.code in (0, None)
            raise
        finally:
            _running.pop()
            push_job_run(name, succeeded, perf_counter() - start, figures)

    return run


def push_job_run(name: str, succeeded: bool, seconds: float, reported: dict[str, float]) -> None:
    """One run of job `name` to the Pushgateway (METRICS_PUSHGATEWAY_URL; unset: nothing),
    with the figures it `reported`. Only the pushed names are replaced in the job's group:
    a failure leaves the time of the last success as it was."""
    url = metrics_settings().pushgateway_url
    if not url:
        return
    registry = CollectorRegistry()
    figures = {
        JOB_DURATION: seconds,
        JOB_SUCCESS: int(succeeded),
        JOB_LAST_SUCCESS if succeeded else JOB_LAST_FAILURE: time.time(),
        **reported,
    }
    for figure, value in figures.items():
        Gauge(figure, JOB_FIGURES[figure], registry=registry).set(value)
    try:
        pushadd_to_gateway(url, job=name, registry=registry, timeout=10)
    except OSError as error:  # the gateway is down: the run's outcome stands
        log.warning("could not push job=%s metrics to %s: %r", name, url, error)
