"""The similar-image index at 10,000 posts, in one run: its build time, one query's
latency (p50, p99; one thread, as an API worker asks), its recall@10 against exact search
over every post, and exact search's latency beside it.

The vectors are 64-dimensional (the embedding's), around 60 centres (photos of a few
kinds): the index's speed and recall depend on the number, the dimension and the
clustering of the vectors, not on the model that made them, and the shipped photos are too
few (1,561) to give 10,000 posts distinct vectors. The trained embedding's own recall over
every photo is in `build-image-index`'s report.
"""

import statistics
import time

import numpy as np

from mlsys.aianimals.image_index import (
    ImageIndex,
    exact_neighbours,
    index_neighbours,
    normalised,
    recall_at,
)

POSTS, DIMENSION, QUERIES = 10_000, 64, 1_000


def image_index() -> dict:
    import faiss

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(60, DIMENSION))
    vectors = centres[rng.integers(0, 60, POSTS)] + 0.6 * rng.normal(size=(POSTS, DIMENSION))
    vectors = vectors.astype(np.float32)
    ids = [f"post-{i}" for i in range(POSTS)]
    start = time.perf_counter()
    index = ImageIndex.build(ids, vectors)
    build_seconds = time.perf_counter() - start
    recall = recall_at(index_neighbours(index, 10), exact_neighbours(vectors, 10))

    def latencies(query) -> list[float]:
        seconds = []
        for animal_id in ids[:QUERIES]:
            start = time.perf_counter()
            query(animal_id)
            seconds.append(time.perf_counter() - start)
        return seconds

    unit = normalised(vectors)
    indexed = latencies(lambda animal_id: index.similar(animal_id, 10))
    exact = latencies(lambda animal_id: np.argpartition(-(unit @ index.vector(animal_id)), 11)[:11])
    return {
        "posts": POSTS,
        "dimension": DIMENSION,
        "build_seconds": round(build_seconds, 3),
        "recall@10": round(recall, 4),
        "query_p50_ms": round(1e3 * statistics.median(indexed), 3),
        "query_p99_ms": round(1e3 * np.quantile(indexed, 0.99), 3),
        "exact_query_p50_ms": round(1e3 * statistics.median(exact), 3),
    }
