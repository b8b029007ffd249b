"""The image-index job (`python -m mlsys.search build-image-index`, the image-index
CronWorkflow): train the image embedding on the shipped photos, report how well its index
finds neighbours, register it, and when it beats the champion on the same test photos,
embed every post with it and make it the champion.

The alias moves only once every post is embedded by the new version, so the API never
serves a half-built index: the gate judges first and promotes after."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageIndexOptions:
    images: Path = Path("dataset/images")  # the labelled photos: a folder with manifest.csv
    epochs: int = 30
    resolution: int = 64  # the embedding model's input size in pixels
    width: int = 16  # filters of its first block
    limit: int | None = None  # a stratified sample of this many photos (None: all)
    seed: int = 0  # the split's and the training's
    promote: bool = True


@dataclass
class ImageIndexOutcome:
    report: dict
    version: int
    champion_precision: float | None = None  # the champion on the same test photos
    promoted: bool = False
    posts_embedded: int = 0
    posts_skipped: int = 0  # without a readable photo


def build_image_index(
    options: ImageIndexOptions, registered: Callable[[ImageIndexOutcome], None] | None = None
) -> ImageIndexOutcome:
    """`registered` is told as soon as the version is registered, before the gate and the
    posts' embedding (minutes at full size)."""
    import numpy as np

    from mlsys.aianimals.database import get_engine, upgrade_or_wait
    from mlsys.aianimals.image_index import (
        IMAGE_EMBEDDING_MODEL_NAME,
        ImageIndex,
        chance,
        exact_neighbours,
        index_neighbours,
        recall_at,
    )
    from mlsys.aianimals.photos import fingerprint, load_photos, split
    from mlsys.aianimals.storage import photo_store
    from mlsys.common.tracking import CHAMPION_VERSION, apply_verdict, judge
    from mlsys.search.image_embedding import (
        EmbeddingParams,
        embed,
        neighbour_precision,
        train_embedding,
    )
    from mlsys.search.post_embeddings import LoadedEmbedding, embed_all_posts
    from mlsys.search.tracking import (
        EMBEDDING_GATE_METRIC,
        load_embedding_model,
        log_embedding_run,
    )

    engine = get_engine()
    upgrade_or_wait(engine)
    photos = load_photos(options.images, limit=options.limit, seed=options.seed)
    parts = split(photos.labels, options.seed)
    subcategories = np.array(photos.subcategories)
    labels = np.where(photos.labels == 1, "no_animal", "animal")
    params = EmbeddingParams(
        resolution=options.resolution, width=options.width, epochs=options.epochs, seed=options.seed
    )

    def progress(epoch: int, record: dict) -> None:
        log.info(
            "epoch %d/%d loss=%.4f val_accuracy=%.4f",
            epoch + 1, options.epochs, record.get("loss", float("nan")), record["val_accuracy"],
        )  # fmt: skip

    trained = train_embedding(
        photos.images[parts.train], list(subcategories[parts.train]),
        photos.images[parts.validation], list(subcategories[parts.validation]),
        params, progress,
    )  # fmt: skip
    vectors = embed(trained.model, photos.images)
    started = time.monotonic()
    index = ImageIndex.build(photos.files, vectors)
    build_seconds = time.monotonic() - started
    test = parts.test
    kinds = {"label": labels[test], "subcategory": subcategories[test]}
    precision = neighbour_precision(vectors[test], kinds)
    report = {
        "recall@10": recall_at(index_neighbours(index, 10), exact_neighbours(vectors, 10)),
        "precision@10_label": precision["label"],
        "precision@10_subcategory": precision["subcategory"],
        "chance": {name: chance(values) for name, values in kinds.items()},
        "photos": {"indexed": len(index), "train": len(parts.train),
                   "validation": len(parts.validation), "test": len(test)},
        "subcategories": len(trained.classes),
        "dimension": params.dimension,
        "best_epoch": trained.best_epoch + 1,
        "train_seconds": round(trained.seconds, 1),
        "build_seconds": round(build_seconds, 3),
    }  # fmt: skip
    _, version = log_embedding_run(
        trained=trained, params=params, report=report, fingerprint=fingerprint(photos)
    )
    outcome = ImageIndexOutcome(report, version)
    if registered is not None:
        registered(outcome)
    if not options.promote:
        return outcome

    def champion_precision(_) -> float:
        champion_vectors = embed(load_embedding_model(CHAMPION_VERSION), photos.images[test])
        outcome.champion_precision = neighbour_precision(champion_vectors, kinds)["subcategory"]
        return outcome.champion_precision

    verdict = judge(
        IMAGE_EMBEDDING_MODEL_NAME,
        version,
        EMBEDDING_GATE_METRIC,
        precision["subcategory"],
        champion_precision,
        higher_is_better=True,
    )
    if not verdict.beats:
        apply_verdict(verdict)  # records why
        return outcome
    loaded = LoadedEmbedding(version, trained.model)
    store = photo_store()

    def posts_progress(done: int, total: int) -> None:
        log.info("posts embedded %d/%d", done, total)

    # Every post first, so the API finds the whole index when the alias moves; then the
    # posts made meanwhile, which the consumer embedded with the champion before.
    stats = embed_all_posts(engine, store, loaded, posts_progress)
    apply_verdict(verdict)
    late = embed_all_posts(engine, store, loaded)
    outcome.promoted = True
    outcome.posts_embedded = stats.embedded + late.embedded
    outcome.posts_skipped = stats.skipped + late.skipped
    return outcome
