"""The detection consumer: every new post's photo judged by the classifier server.

A message names a post (`{"animal_id": ...}`, Topic.animal_created). The handler reads the
posts and their photos, asks the server (`POST /v1/predict`, one request per batch), and
in one transaction writes a violation row per post and model version, deactivates the
posts judged violations and announces every newly judged post in the outbox
(Topic.animal_updated): a violation leaves the search index by the path every
deactivation takes, and with MODERATION_UNJUDGED_POSTS=hidden a post judged fine joins it.
The consumer acks only after that commit.

- Delivered twice: one row (unique per post, type and model version), and a post is
  deactivated only by the row that was new, so a reversal by a moderator is not undone
  by a redelivered message.
- An unknown post, a photo gone or one the server refuses (4xx): no retry can fix it,
  the message is dead-lettered at once (the batch is retried one message at a time, so
  the others go through).
- The server unreachable or not ready (5xx, 503 until a model is loaded): retried after
  the backoff, then dead-lettered; `batch replay-dead-letters violation-detection` gives
  them back.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy import Connection, Engine, update
from sqlalchemy.dialects import postgresql, sqlite

from mlsys.aianimals.indexing import post_ids
from mlsys.aianimals.messages import Message, PermanentFailure, Topic, add_to_outbox
from mlsys.aianimals.storage import PhotoMissing, PhotoStore, photo_store, read_post_photos
from mlsys.aianimals.tables import NO_ANIMAL_VIOLATION_ID, Animal, Violation
from mlsys.common.logging import get_logger
from mlsys.violation_detection.serve import (
    MAX_BATCH,
    MAX_REQUEST_BYTES,
    PREDICT,
    classifier_settings,
)

log = get_logger(__name__)


class UnjudgeablePost(PermanentFailure):
    """A post that does not exist, has no photo, or whose photo the server refuses."""


@dataclass(frozen=True)
class Judgement:
    animal_id: str
    probability: float
    violation: bool


@dataclass(frozen=True)
class Judgements:
    model: str  # `<registered name>/<version>`
    threshold: float
    photos: list[Judgement]


class Classifier:
    """The classifier server's client: one request judges a batch of photos."""

    def __init__(self, client: httpx.Client):
        self.client = client

    @classmethod
    def from_settings(cls) -> "Classifier":
        settings = classifier_settings()
        token = settings.token.get_secret_value()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return cls(
            httpx.Client(base_url=settings.url, timeout=settings.timeout_seconds, headers=headers)
        )

    def wait_until_ready(self, timeout_seconds: float = 600.0) -> None:
        """Return once the server has a model loaded: started beside it, the consumer
        would otherwise spend each message's retries while the champion loads."""
        deadline, said = time.monotonic() + timeout_seconds, False
        while True:
            try:
                if self.client.get("/health/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the classifier at {self.client.base_url} is not ready")
            if not said:
                log.info("waiting for the classifier at %s to be ready", self.client.base_url)
                said = True
            time.sleep(1.0)

    def judge(self, photos: dict[str, bytes]) -> Judgements:
        """Every photo judged, in requests within the server's batch size and body limit;
        one model version judges them all (a champion moving between requests is
        retried)."""
        parts = [self._judge(request) for request in requests(photos)]
        if len({(part.model, part.threshold) for part in parts}) > 1:
            raise RuntimeError("the champion moved while a batch was judged")
        return Judgements(
            parts[0].model, parts[0].threshold, [p for part in parts for p in part.photos]
        )

    def _judge(self, photos: dict[str, bytes]) -> Judgements:
        response = self.client.post(
            PREDICT,
            files=[("photos", (animal_id, data)) for animal_id, data in photos.items()],
        )
        if response.is_client_error:  # the photo is what is wrong: no retry helps
            raise UnjudgeablePost(f"the classifier refused it: {_detail(response)}")
        response.raise_for_status()  # 5xx, 503 until a model is loaded: retried
        body = response.json()
        answers = body["predictions"]
        if len(answers) != len(photos):
            raise RuntimeError(f"{len(photos)} photos sent, {len(answers)} judgements back")
        return Judgements(
            model=body["model"],
            threshold=float(body["threshold"]),
            photos=[
                Judgement(animal_id, float(answer["no_animal"]), bool(answer["violation"]))
                for animal_id, answer in zip(photos, answers, strict=True)
            ],
        )


# A part's own bytes beside its photo's: boundary, headers and the file name (a post id).
PART_OVERHEAD = 512


def requests(photos: dict[str, bytes]) -> list[dict[str, bytes]]:
    """The photos in order, split into requests of at most MAX_BATCH photos and
    MAX_REQUEST_BYTES of body (a photo is at most MAX_PHOTO_BYTES, far below it)."""
    split: list[dict[str, bytes]] = [{}]
    size = 0
    for animal_id, data in photos.items():
        part = len(data) + PART_OVERHEAD
        if len(split[-1]) == MAX_BATCH or (split[-1] and size + part > MAX_REQUEST_BYTES):
            split.append({})
            size = 0
        split[-1][animal_id] = data
        size += part
    return [request for request in split if request]


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text[:200]


def read_photos(engine: Engine, store: PhotoStore, animal_ids: list[str]) -> dict[str, bytes]:
    """The posts' photos, in the order of `animal_ids`; raises UnjudgeablePost for a post
    that does not exist or whose photo is gone."""
    try:
        return read_post_photos(engine, store, animal_ids)
    except PhotoMissing as error:
        raise UnjudgeablePost(str(error)) from error


def record(connection: Connection, judgements: Judgements) -> list[str]:
    """Write the judgements (one row per post and model version), deactivate the posts
    that new rows judge violations and announce every post a new row judged; returns the
    ids of the posts deactivated."""
    insert = (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(
        Violation
    )
    now = datetime.now(UTC)
    rows = [
        {
            "animal_id": photo.animal_id,
            "violation_type_id": NO_ANIMAL_VIOLATION_ID,
            "probability": photo.probability,
            "threshold": judgements.threshold,
            "model_version": judgements.model,
            "is_violation": photo.violation,
            "created_at": now,
        }
        for photo in judgements.photos
    ]
    new = connection.execute(
        insert.on_conflict_do_nothing().returning(Violation.animal_id, Violation.is_violation),
        rows,
    ).all()
    add_to_outbox(connection, Topic.animal_updated, [{"animal_id": i} for i, _ in new])
    violating = [animal_id for animal_id, is_violation in new if is_violation]
    if not violating:
        return []
    deactivated = connection.execute(
        update(Animal)
        .where(Animal.id.in_(violating), Animal.deactivated.is_(False))
        .values(deactivated=True, updated_at=now)
        .returning(Animal.id)
    ).scalars().all()  # fmt: skip
    return list(deactivated)


def detect_violations(
    engine: Engine, classifier: Classifier, messages: list[Message], store: PhotoStore | None = None
) -> None:
    """The consumer's handler: judge the posts the messages name, record, deactivate."""
    ids = post_ids(messages)
    judgements = classifier.judge(read_photos(engine, store or photo_store(), ids))
    with engine.begin() as db:
        deactivated = record(db, judgements)
    log.info(
        "judged=%d model=%s deactivated=%d", len(judgements.photos), judgements.model,
        len(deactivated),
    )  # fmt: skip
