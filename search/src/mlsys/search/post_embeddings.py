"""Posts' photos in the similar-image index (the post_embeddings rows the API builds its
index from): a new version of the embedding embeds every post before it becomes the
champion (`build-image-index`), and the image-index consumer embeds each new post with
the champion of the moment.

The consumer asks MLflow which version is the champion before each batch, so a post made
while a new champion is published is embedded by the new one; the job embeds, once the
alias has moved, the posts made while it embedded the others. A post whose photo is
missing or unreadable is a poison message: dead-lettered. With no champion yet, a new
post waits for the first build, which embeds every post.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Engine, exists, select

from mlsys.aianimals.image_index import (
    IMAGE_EMBEDDING_MODEL_NAME,
    model_version_name,
    write_embeddings,
)
from mlsys.aianimals.indexing import post_ids
from mlsys.aianimals.messages import Message, PermanentFailure
from mlsys.aianimals.photos import UnreadablePhoto, photo_from_bytes
from mlsys.aianimals.storage import PhotoMissing, PhotoStore, read_post_photos
from mlsys.aianimals.tables import Animal, PostEmbedding
from mlsys.common.logging import get_logger
from mlsys.common.tracking import ChampionWatch

log = get_logger(__name__)
CHUNK = 1024  # posts embedded and written at once: their photos held in memory together


class UnindexablePost(PermanentFailure):
    """A post that does not exist, or whose photo is gone or unreadable."""


@dataclass(frozen=True)
class LoadedEmbedding:
    version: int
    model: object  # keras.Model: uint8 photos (N x 128 x 128 x 3) -> unit vectors

    @property
    def name(self) -> str:
        return model_version_name(self.version)


def load_embedding(version: int) -> LoadedEmbedding:
    from mlsys.search.tracking import load_embedding_model

    return LoadedEmbedding(version, load_embedding_model(version))


def champion_embedding(refresh_seconds: float = 30.0) -> ChampionWatch[LoadedEmbedding]:
    return ChampionWatch(
        IMAGE_EMBEDDING_MODEL_NAME, load_embedding, refresh_seconds, what="image embedding"
    )


def embed_photos(
    model, photos: dict[str, bytes], skip_unreadable: bool = False
) -> tuple[list[str], np.ndarray]:
    """(post ids, unit vectors) of the photos; a photo shown by many posts is decoded and
    embedded once. Raises UnreadablePhoto naming the post, unless `skip_unreadable` leaves
    it out (with a warning)."""
    from mlsys.search.image_embedding import embed

    distinct: dict[bytes, int] = {}
    images: list[np.ndarray] = []
    ids: list[str] = []
    row_of: list[int] = []
    for animal_id, data in photos.items():
        digest = hashlib.sha256(data).digest()
        if digest not in distinct:
            try:
                image = photo_from_bytes(data, f"post {animal_id}")
            except UnreadablePhoto as error:
                if not skip_unreadable:
                    raise
                log.warning("not indexed: %s", error)
                continue
            distinct[digest] = len(images)
            images.append(image)
        ids.append(animal_id)
        row_of.append(distinct[digest])
    if not images:
        return [], np.zeros((0, 0), dtype=np.float32)
    return ids, embed(model, np.stack(images))[row_of]


def unembedded_posts(engine: Engine, model_version: str) -> list[str]:
    """Every post (deactivated ones too: a reversal brings a post back) not yet embedded
    by this version."""
    done = exists().where(
        PostEmbedding.animal_id == Animal.id, PostEmbedding.model_version == model_version
    )
    with engine.connect() as db:
        return list(db.scalars(select(Animal.id).where(~done).order_by(Animal.id)))


@dataclass
class EmbeddedPosts:
    embedded: int = 0
    skipped: int = 0  # no photo stored, or not an image: never in the index


def embed_all_posts(
    engine: Engine,
    store: PhotoStore,
    loaded: LoadedEmbedding,
    progress: Callable[[int, int], None] | None = None,
) -> EmbeddedPosts:
    """Embed every post this version has not embedded yet, CHUNK posts at a time."""
    todo = unembedded_posts(engine, loaded.name)
    stats = EmbeddedPosts()
    for start in range(0, len(todo), CHUNK):
        chunk = todo[start : start + CHUNK]
        photos = read_post_photos(engine, store, chunk, skip_missing=True)
        ids, vectors = embed_photos(loaded.model, photos, skip_unreadable=True)
        stats.skipped += len(chunk) - len(ids)
        with engine.begin() as db:
            stats.embedded += write_embeddings(db, loaded.name, ids, vectors)
        if progress is not None:
            progress(min(start + CHUNK, len(todo)), len(todo))
    return stats


def index_new_posts(
    engine: Engine,
    store: PhotoStore,
    champion: ChampionWatch[LoadedEmbedding],
    messages: list[Message],
) -> None:
    """The image-index consumer's handler: embed the posts the messages name."""
    ids = post_ids(messages)
    champion.refresh()
    loaded = champion.loaded
    if loaded is None:
        log.info("no image embedding is the champion yet: %d posts wait for the first "
                 "build-image-index (%s)", len(ids), champion.problem)  # fmt: skip
        return
    try:
        ids, vectors = embed_photos(loaded.model, read_post_photos(engine, store, ids))
    except (PhotoMissing, UnreadablePhoto) as error:
        raise UnindexablePost(str(error)) from error
    with engine.begin() as db:
        written = write_embeddings(db, loaded.name, ids, vectors)
    log.info("embedded=%d new=%d model=%s", len(ids), written, loaded.name)
