"""The API without its request metrics (mlsys.common.metrics): the baseline the search
bench measures their overhead against, served the same way (`uvicorn --factory`)."""

from fastapi import FastAPI

from mlsys.api.app import create_app as create_api
from mlsys.common.metrics import HttpMetricsMiddleware


def create_app() -> FastAPI:
    app = create_api()
    app.user_middleware = [m for m in app.user_middleware if m.cls is not HttpMetricsMiddleware]
    return app
