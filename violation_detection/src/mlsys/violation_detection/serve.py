"""The no-animal classifier over HTTP: `POST /v1/predict` with one photo or a batch.

The champion (its fitted pipeline and the threshold registered with it) is loaded in the
background at start and again whenever the champion alias names another version, checked
every REFRESH_SECONDS; requests never wait for MLflow. Until a model is
loaded, `/health/ready` and predictions answer 503. Photos are decoded here (PNG or JPEG),
resized to the 128 x 128 the model takes, and refused with a 4xx that says why when they
are not an image, too small or too large, or too many in one request. Predictions are only
for callers that send the token (`VIOLATION_DETECTION_TOKEN`, the detection consumer's),
checked before a byte of the body is read, and a body over MAX_REQUEST_BYTES is refused
unread; health and metrics stay open for probes and Prometheus.
"""

import hmac
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, File, HTTPException, Request, Response, UploadFile, status
from fastapi.concurrency import run_in_threadpool
from fastapi_offline import FastAPIOffline
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from mlsys.aianimals.photos import (
    IMAGE_SIZE,
    MAX_PHOTO_BYTES,
    UnreadablePhoto,
    photo_from_bytes,
)
from mlsys.common.logging import get_logger
from mlsys.common.metrics import SERVED_MODELS, HttpMetrics, HttpMetricsMiddleware
from mlsys.common.serving import BodyLimit, answer
from mlsys.common.settings import require_secret
from mlsys.common.tracking import ChampionWatch

log = get_logger(__name__)
REFRESH_SECONDS = 30.0
MAX_BATCH = 64
# The largest request body: what the detection consumer puts in one request (at most
# MAX_BATCH photos within these bytes, each at most MAX_PHOTO_BYTES).
MAX_REQUEST_BYTES = 32 * 1024 * 1024
PREDICT = "/v1/predict"


class ClassifierSettings(BaseSettings):
    """The classifier's server: where the detection consumer finds it, and the token its
    callers send (empty: open, in development only)."""

    model_config = SettingsConfigDict(env_prefix="VIOLATION_DETECTION_")

    url: str = "http://127.0.0.1:8100"
    timeout_seconds: float = 30.0
    token: SecretStr = SecretStr("")


def classifier_settings() -> ClassifierSettings:
    settings = ClassifierSettings()
    require_secret("VIOLATION_DETECTION_TOKEN", settings.token)
    return settings


class Callers:
    """Pure ASGI: predictions only for a caller with the token, refused before the body is
    read (FastAPI parses a body before it solves any dependency). Not installed without a
    token, which only development allows."""

    def __init__(self, app, token: str):
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == PREDICT:
            sent = [value for name, value in scope["headers"] if name == b"authorization"]
            if len(sent) != 1 or not hmac.compare_digest(sent[0], self.expected):
                await answer(send, 401, "send the classifier's token: Authorization: Bearer",
                             [(b"www-authenticate", b"Bearer")])  # fmt: skip
                return
        await self.app(scope, receive, send)


REFUSAL_STATUS = {
    "too_large": status.HTTP_413_CONTENT_TOO_LARGE,
    "wrong_size": status.HTTP_422_UNPROCESSABLE_CONTENT,
    "not_an_image": status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
}

METRICS = CollectorRegistry()
PREDICTIONS = Counter(
    "violation_predictions_total",
    "Photos judged, by outcome",
    ["outcome"],
    registry=METRICS,
)
REFUSED = Counter(
    "violation_refused_photos_total", "Photos refused, by reason", ["reason"], registry=METRICS
)
SECONDS = Histogram(
    "violation_predict_duration_seconds",
    "Time to judge one request's photos (decoding included)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=METRICS,
)
HTTP = HttpMetrics(METRICS)
METRICS.register(SERVED_MODELS)  # the champion served, beside the classifier's own


@dataclass(frozen=True)
class LoadedModel:
    version: int
    threshold: float
    infer: object  # photos (N x 128 x 128 x 3 uint8) -> probabilities of "no animal"

    @property
    def name(self) -> str:
        from mlsys.violation_detection.tracking import MODEL_NAME

        return f"{MODEL_NAME}/{self.version}"


def _load_classifier(version: int) -> LoadedModel:
    """The version's fitted pipeline, with its threshold: loaded as the gate loads it."""
    from mlsys.violation_detection.tracking import load_version
    from mlsys.violation_detection.train import no_animal_scores

    model, threshold = load_version(version)
    no_animal_scores(model, np.full((1, IMAGE_SIZE, IMAGE_SIZE, 3), 255, np.uint8))  # it scores

    def infer(photos: np.ndarray) -> np.ndarray:
        return no_animal_scores(model, photos)

    return LoadedModel(version, threshold, infer)


def champion_classifier(refresh_seconds: float = REFRESH_SECONDS) -> ChampionWatch[LoadedModel]:
    """The champion classifier and its threshold, as this server judges with them."""
    from mlsys.violation_detection.tracking import MODEL_NAME

    return ChampionWatch(MODEL_NAME, _load_classifier, refresh_seconds, what="classifier")


def decode_photo(name: str, data: bytes) -> np.ndarray:
    """A photo as 128 x 128 RGB, or an HTTPException saying why it cannot be judged."""
    try:
        return photo_from_bytes(data, name)
    except UnreadablePhoto as error:
        REFUSED.labels(error.reason).inc()
        raise HTTPException(REFUSAL_STATUS[error.reason], str(error)) from None


async def get_champion(request: Request) -> ChampionWatch[LoadedModel]:
    return request.app.state.champion


ChampionDep = Annotated[ChampionWatch[LoadedModel], Depends(get_champion)]


def create_app(champion: ChampionWatch[LoadedModel] | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        stop = threading.Event()
        if champion is None:
            app.state.champion.start(stop)
        yield
        stop.set()

    # Swagger UI from the package, not a CDN: the cluster may have no internet.
    app = FastAPIOffline(title="AIAnimals no-animal classifier", version="1", lifespan=lifespan)
    app.state.champion = champion or champion_classifier()
    app.add_middleware(BodyLimit, limit=lambda method, path: MAX_REQUEST_BYTES)
    if token := classifier_settings().token.get_secret_value():
        app.add_middleware(Callers, token=token)  # before the body: a stranger's is never read
    app.add_middleware(HttpMetricsMiddleware, metrics=HTTP)  # outermost: refusals counted

    @app.get("/health")
    async def health() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready(current: ChampionDep) -> dict:
        """Readiness: a classifier is loaded."""
        if current.loaded is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, current.problem)
        return {"status": "ok", "model": current.loaded.name}

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(METRICS), media_type=CONTENT_TYPE_LATEST)

    @app.post(PREDICT, responses={401: {}, 413: {}, 415: {}, 422: {}, 503: {}})
    async def predict(
        current: ChampionDep,
        photos: Annotated[list[UploadFile], File(description=f"1 to {MAX_BATCH} photos")],
    ) -> dict:
        """The probability that each photo shows no animal, and whether that is a violation
        (at or above the threshold registered with the model)."""
        model = current.loaded
        if model is None:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, current.problem)
        if len(photos) > MAX_BATCH:
            raise HTTPException(
                status.HTTP_413_CONTENT_TOO_LARGE, f"at most {MAX_BATCH} photos per request"
            )
        start = time.perf_counter()
        raw = [(photo.filename or f"photo {i + 1}", await photo.read(MAX_PHOTO_BYTES + 1))
               for i, photo in enumerate(photos)]  # fmt: skip

        def judged() -> np.ndarray:
            batch = np.stack([decode_photo(name, data) for name, data in raw])
            return model.infer(batch)  # type: ignore[operator]

        probabilities = await run_in_threadpool(judged)
        SECONDS.observe(time.perf_counter() - start)
        answers = []
        for probability in probabilities.tolist():
            violation = probability >= model.threshold
            PREDICTIONS.labels("violation" if violation else "ok").inc()
            answers.append({"no_animal": probability, "violation": violation})
        return {"model": model.name, "threshold": model.threshold, "predictions": answers}

    return app
