"""Similar posts in the API: the champion image embedding's post_embeddings rows in a
faiss HNSW index, held in memory. Built in the background when the champion alias moves
(checked every REFRESH_SECONDS) and kept up with the rows the image-index consumer adds
(read every CATCH_UP_SECONDS), so a request never waits for MLflow or a full read; until
an index is built the endpoint answers 503 and says why."""

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from sqlalchemy import Engine

from mlsys.aianimals.image_index import (
    IMAGE_EMBEDDING_MODEL_NAME,
    ImageIndex,
    model_version_name,
    read_embeddings,
)
from mlsys.common.logging import get_logger
from mlsys.common.tracking import ChampionWatch

log = get_logger(__name__)
REFRESH_SECONDS = 30.0  # how soon a new champion's index is served
CATCH_UP_SECONDS = 1.0  # how soon a new post's embedding is found


class NotIndexed(LookupError):
    """The post has no embedding in the served version (yet)."""


@dataclass
class ServedIndex:
    """One version's index and the last post_embeddings row it holds."""

    version: int
    index: ImageIndex | None  # None while the version has no rows
    last_id: int
    lock: threading.Lock = field(default_factory=threading.Lock)  # faiss: add xor search

    @property
    def name(self) -> str:
        return model_version_name(self.version)

    def add(self, ids: list[str], vectors, last_id: int) -> None:
        if not ids:
            return
        with self.lock:
            if self.index is None:
                self.index = ImageIndex.build(ids, vectors)
            else:
                self.index.add(ids, vectors)
            self.last_id = last_id


class SimilarImages:
    """What `POST /v0/animal/search/similar` reads (app.state.similar_images)."""

    def __init__(
        self,
        engine: Engine,
        refresh_seconds: float | None = None,
        catch_up_seconds: float | None = None,
    ):
        self.engine = engine
        self.catch_up_seconds = catch_up_seconds or CATCH_UP_SECONDS
        self.watch = ChampionWatch(
            IMAGE_EMBEDDING_MODEL_NAME,
            self._load,
            refresh_seconds or REFRESH_SECONDS,
            what="similar-image index",
        )

    def _load(self, version: int) -> ServedIndex:
        served = ServedIndex(version, None, 0)
        self._catch_up(served)
        log.info("similar-image index: %d posts of %s",
                 len(served.index) if served.index else 0, served.name)  # fmt: skip
        return served

    def _catch_up(self, served: ServedIndex) -> None:
        with self.engine.connect() as db:
            ids, vectors, last_id = read_embeddings(db, served.name, served.last_id)
        served.add(ids, vectors, last_id)

    def catch_up(self) -> None:
        """Add the rows written since the last look to the served index."""
        served = self.watch.loaded
        if served is not None:
            self._catch_up(served)

    def start(self, stop: threading.Event) -> None:
        """The champion checked every REFRESH_SECONDS, new rows read every second."""
        self.watch.start(stop)

        def loop() -> None:
            while not stop.wait(self.catch_up_seconds):
                try:
                    self.catch_up()
                except Exception as error:  # the database away: the index stays as it is
                    log.warning("similar-image index not caught up error=%r", error)

        threading.Thread(target=loop, name="similar-images-catch-up", daemon=True).start()

    def similar(
        self, animal_id: str, limit: int, allowed: Callable[[list[str]], Collection[str]]
    ) -> tuple[str, list[tuple[str, float]]]:
        """(the version's name, the allowed posts most like `animal_id`'s photo with their
        cosine similarity, most similar first). Raises NotIndexed, or LookupError with
        the reason when no index is served."""
        served = self.watch.loaded
        if served is None:
            raise LookupError(self.watch.problem)
        wanted = limit
        while True:
            # The lock only around faiss: `allowed` asks the database.
            with served.lock:
                if served.index is None or animal_id not in served.index:
                    raise NotIndexed(animal_id)
                found = served.index.similar(animal_id, wanted)
                everything = len(found) >= len(served.index) - 1
            shown = allowed([candidate for candidate, _ in found])
            kept = [(candidate, score) for candidate, score in found if candidate in shown]
            if len(kept) >= limit or everything:
                return served.name, kept[:limit]
            wanted *= 4  # deactivated posts among the nearest: look further
