"""The AIAnimals API application: routes under /v0, Swagger at /v0/docs, /metrics."""

import gc
import threading
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import ColumnElement, or_, select, text
from sqlalchemy.exc import OperationalError
from starlette.responses import Response

from mlsys.aianimals import storage
from mlsys.aianimals.cache import get_cache
from mlsys.aianimals.database import SCHEMA, get_engine
from mlsys.aianimals.search import SearchEngineError, get_search_index
from mlsys.aianimals.settings import MailSettings, auth_settings
from mlsys.aianimals.tables import Animal
from mlsys.aianimals.throttle import LoginThrottle
from mlsys.api import guards, metrics
from mlsys.api.active_users import ActiveUsers
from mlsys.api.clients import from_trusted_proxy
from mlsys.api.deps import SessionDep, ViewerId
from mlsys.api.ranking import ActivityCache, Ranking, champion_ranker
from mlsys.api.routes import access_logs, animals, likes, metadata, users
from mlsys.api.schemas import Health, Storable, errors
from mlsys.api.similar import SimilarImages
from mlsys.api.similar_words import champion_similar_words
from mlsys.common import migrate
from mlsys.common.logging import get_logger
from mlsys.common.metrics import HttpMetricsMiddleware
from mlsys.common.serving import BodyLimit
from mlsys.common.settings import Profile, platform_settings

WEB_CLIENT = Path(__file__).with_name("web")

log = get_logger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI):
    # Built once per process, from the environment; routes reach them through deps.py.
    app.state.auth = auth_settings()  # refuses to start without a secret key in production
    app.state.engine = get_engine()
    app.state.users = ActiveUsers(app.state.engine, app.state.auth.user_cache_seconds)
    app.state.schema_at_head = False
    app.state.cache = get_cache()
    app.state.login_throttle = LoginThrottle(app.state.auth)
    app.state.mail = MailSettings()  # how long a sign-up waits (the mailer needs MAIL_URL)
    app.state.search_index = get_search_index()
    stop = threading.Event()
    app.state.ranking = Ranking(champion_ranker(), ActivityCache(app.state.engine))
    app.state.ranking.ranker.start(stop)  # loads the champion in the background
    app.state.similar_words = champion_similar_words(on_change=app.state.cache.invalidate)
    app.state.similar_words.start(stop)  # loads the champion in the background
    app.state.similar_images = SimilarImages(app.state.engine)
    app.state.similar_images.start(stop)  # builds the champion's index in the background
    consumers: list[threading.Thread] = []
    if platform_settings().profile is Profile.local:
        # The local profile runs the consumers inside the API process: the in-process
        # cache is then invalidated by the process that serves it.
        from mlsys.aianimals.activity import refresh_activity
        from mlsys.aianimals.database import upgrade_or_wait
        from mlsys.aianimals.indexing import index_posts
        from mlsys.aianimals.messages import Queue, consume
        from mlsys.aianimals.registrations import mail_registrations
        from mlsys.aianimals.settings import mail_settings

        engine = app.state.engine
        upgrade_or_wait(engine)
        handlers = {
            Queue.search_index: partial(index_posts, engine, app.state.search_index),
            Queue.ranking_features: partial(refresh_activity, engine),
            Queue.account_mail: partial(mail_registrations, engine, mail_settings()),
        }
        for queue, handler in handlers.items():
            consumer = threading.Thread(
                target=consume,
                args=(queue, handler, engine),
                kwargs={"stop": stop.is_set},
                name=queue,
                daemon=True,
            )
            consumer.start()
            consumers.append(consumer)
    # Everything built so far lives as long as the process: keep it out of the collector's
    # scans, which otherwise show up as latency spikes under load.
    gc.freeze()
    yield
    stop.set()
    for consumer in consumers:
        consumer.join(timeout=10)
    await app.state.cache.aclose()


def create_app() -> FastAPI:
    # Swagger UI and ReDoc from the API itself, not a CDN: the docs work without internet.
    app = FastAPIOffline(
        title="AIAnimals API",
        version="0.1.0",
        description="Backend of the AIAnimals pet photo-sharing app. Log in with "
        "`POST /v0/user/login` and send the token in the `token` header.",
        docs_url="/v0/docs",
        redoc_url="/v0/redoc",
        static_url="/v0/docs-assets",
        openapi_url="/v0/openapi.json",
        lifespan=lifespan,
    )
    # Each router carries its whole /v0/... prefix, so route templates (metrics) are whole.
    for module in (users, metadata, animals, likes, access_logs):
        app.include_router(module.router)

    # The web client: static files that speak only the public /v0 API, as the app does.
    app.mount(guards.WEB_CLIENT, StaticFiles(directory=WEB_CLIENT, html=True), name="web-client")

    @app.get("/v0/health-check", response_model=Health, tags=["health"])
    async def health_check() -> Health:
        """Liveness: the process answers."""
        return Health(health="ok")

    @app.get(
        "/v0/health-check/ready", response_model=Health, tags=["health"], responses=errors(503)
    )
    def ready(request: Request, session: SessionDep) -> Health:
        """Readiness: the database answers and holds the schema this version needs."""
        session.execute(text("SELECT 1"))
        if not request.app.state.schema_at_head:
            if not migrate.at_head(SCHEMA, request.app.state.engine):
                raise HTTPException(
                    status.HTTP_503_SERVICE_UNAVAILABLE,
                    "the database schema is behind this version: run "
                    "`python -m mlsys.batch migrate` as the database's owner",
                )
            request.app.state.schema_at_head = True  # a schema does not go back
        return Health(health="ok")

    @app.get(
        "/v0/photos/{key:path}",
        tags=["animal"],
        response_class=Response,
        responses={200: {"content": {"image/png": {}, "image/jpeg": {}}}, **errors(404)},
    )
    def photo(key: Annotated[str, Storable], session: SessionDep, viewer: ViewerId) -> Response:
        """A stored photo, while an active post shows it; a deactivated post's photo only
        to its owner (who sends the token)."""
        shown: ColumnElement[bool] = Animal.deactivated.is_(False)
        if viewer is not None:
            shown = or_(shown, Animal.user_id == viewer)
        if session.scalar(select(Animal.id).where(Animal.photo_key == key, shown).limit(1)) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such photo")
        data = storage.photo_store().get(key)
        if data is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such photo")
        # Checked on every request: the post may have been deactivated since.
        headers = {"Cache-Control": "private, no-cache"}
        return Response(data, media_type=storage.content_type(key), headers=headers)

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics(request: Request) -> Response:
        """For Prometheus, which scrapes the pods: not through the proxy or the ingress."""
        if from_trusted_proxy(request):
            raise HTTPException(status.HTTP_404_NOT_FOUND, "Not Found")
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(OperationalError)
    def database_unavailable(request: Request, error: OperationalError) -> JSONResponse:
        log.error("database error path=%s error=%r", request.url.path, error)
        return JSONResponse({"detail": "the database is unavailable, try again"}, 503)

    @app.exception_handler(SearchEngineError)
    def search_unavailable(request: Request, error: SearchEngineError) -> JSONResponse:
        log.error("search engine error path=%s error=%s", request.url.path, error)
        return JSONResponse({"detail": "the search engine is unavailable, try again"}, 503)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> JSONResponse:
        """422 with where and why, never the input itself (it may be huge, or a secret)."""
        detail = [{k: e[k] for k in ("type", "loc", "msg") if k in e} for e in error.errors()]
        return JSONResponse({"detail": detail}, status.HTTP_422_UNPROCESSABLE_CONTENT)

    app.add_middleware(guards.RequestGuard)
    app.add_middleware(BodyLimit, limit=guards.body_limit)  # around the guard: read nothing
    # Outermost: requests the guard or the body limit refuse are counted too.
    app.add_middleware(HttpMetricsMiddleware, metrics=metrics.HTTP)
    return app
