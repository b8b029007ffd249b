"""The similar-image index: posts' photo embeddings in an approximate nearest-neighbour
index (faiss HNSW over cosine similarity), how it is judged against exact search, and
what its writers (`mlsys.search`: the job and the consumer of new posts) and its reader
(the API) share: the registered model's name and the post_embeddings rows of a version.

faiss rather than hnswlib or ScaNN: measured on 10,000 clustered 64-dimensional vectors,
one core, both HNSW implementations built in 0.4 s and answered in 0.01-0.02 ms at
recall@10 0.999-1.0 (M 16, efSearch 32-64); faiss ships wheels for every platform (hnswlib
0.8 builds from source, ScaNN has no wheels for every platform), and can add posts to a
built index, as new posts arrive.

Vectors are normalised here, so inner product is cosine similarity whoever made them.
"""

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from mlsys.aianimals.tables import PostEmbedding

IMAGE_EMBEDDING_MODEL_NAME = "aianimals_image_embedding"
IMAGE_SIMILARITY_EXPERIMENT = "aianimals_image_similarity"


def model_version_name(version: int) -> str:
    """How post_embeddings (and the API's answers) name a version of the embedding."""
    return f"{IMAGE_EMBEDDING_MODEL_NAME}/{version}"


def write_embeddings(
    connection: Connection, model_version: str, ids: Sequence[str], vectors: np.ndarray
) -> int:
    """Store posts' vectors for a version; a post already stored keeps its row (a message
    delivered twice writes once). Returns how many rows were new."""
    if not len(ids):
        return 0
    insert = (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(
        PostEmbedding
    )
    now = datetime.now(UTC)
    unit = normalised(vectors)
    rows = [
        {"model_version": model_version, "animal_id": animal_id, "vector": unit[i].tobytes(),
         "created_at": now}
        for i, animal_id in enumerate(ids)
    ]  # fmt: skip
    new = connection.execute(
        insert.on_conflict_do_nothing().returning(PostEmbedding.id), rows
    ).all()
    return len(new)


def read_embeddings(
    connection: Connection, model_version: str, after_id: int = 0
) -> tuple[list[str], np.ndarray, int]:
    """A version's rows written after row `after_id`: (post ids, vectors, the last row's
    id, or `after_id` when there is none)."""
    rows = connection.execute(
        select(PostEmbedding.id, PostEmbedding.animal_id, PostEmbedding.vector)
        .where(PostEmbedding.model_version == model_version, PostEmbedding.id > after_id)
        .order_by(PostEmbedding.id)
    ).all()
    if not rows:
        return [], np.zeros((0, 0), dtype=np.float32), after_id
    vectors = np.stack([np.frombuffer(row.vector, dtype=np.float32) for row in rows])
    return [row.animal_id for row in rows], vectors, rows[-1].id


@dataclass(frozen=True)
class IndexParams:
    neighbours: int = 16  # HNSW's M: links per node; more is slower to build, better recall
    build_breadth: int = 100  # efConstruction
    search_breadth: int = 64  # efSearch: candidates looked at per query


def normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class ImageIndex:
    """Post ids and their embeddings; `similar` answers ids in order of similarity."""

    def __init__(self, dimension: int, params: IndexParams = IndexParams()):
        import faiss

        self.params = params
        # Any: an index read back from a file is typed as faiss's base class
        self._index: Any = faiss.IndexHNSWFlat(
            dimension, params.neighbours, faiss.METRIC_INNER_PRODUCT
        )
        self._index.hnsw.efConstruction = params.build_breadth
        self._index.hnsw.efSearch = params.search_breadth
        self.ids: list[str] = []
        self._position: dict[str, int] = {}

    @classmethod
    def build(
        cls, ids: Sequence[str], vectors: np.ndarray, params: IndexParams = IndexParams()
    ) -> "ImageIndex":
        index = cls(vectors.shape[1], params)
        index.add(ids, vectors)
        return index

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, animal_id: str) -> bool:
        return animal_id in self._position

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> None:
        """Posts not yet in the index; one already there keeps its first vector (a post's
        photo never changes, and a redelivered message must not add it twice)."""
        fresh = []
        for i, animal_id in enumerate(ids):
            if animal_id not in self._position:
                self._position[animal_id] = len(self.ids)
                self.ids.append(animal_id)
                fresh.append(i)
        if not fresh:
            return
        self._index.add(normalised(vectors[fresh]))

    def vector(self, animal_id: str) -> np.ndarray:
        return self._index.reconstruct(self._position[animal_id])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions and cosine similarities of each query's k nearest, best first
        (-1 where the index holds fewer)."""
        similarities, positions = self._index.search(normalised(queries), k)
        return positions, similarities

    def similar(
        self,
        animal_id: str,
        limit: int,
        allowed: Callable[[list[str]], Collection[str]] | None = None,
    ) -> list[tuple[str, float]]:
        """The posts most like `animal_id`'s photo, best first, never itself. `allowed`
        filters: given candidate ids, it answers those that may be shown (e.g. the active
        ones, in one query); the search widens until `limit` are found, and past the whole
        index's size it is exact."""
        query = self.vector(animal_id)[None]
        k = limit + 1
        while True:
            if k < len(self):
                positions, similarities = self.search(query, k)
            else:  # HNSW's graph search may not reach every post: the last resort is exact
                similarities = self._index.reconstruct_n(0, len(self)) @ query[0]
                positions = np.argsort(-similarities)[None]
                similarities = similarities[positions]
            found = [
                (self.ids[p], float(s))
                for p, s in zip(positions[0], similarities[0], strict=True)
                if p >= 0 and self.ids[p] != animal_id
            ]
            if allowed is not None:
                shown = allowed([candidate for candidate, _ in found])
                found = [(candidate, s) for candidate, s in found if candidate in shown]
            if len(found) >= limit or k >= len(self):
                return found[:limit]
            k *= 4

    def save(self, directory: Path) -> None:
        import faiss

        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self._index, str(directory / "index.faiss"))
        (directory / "ids.txt").write_text("\n".join(self.ids))

    @classmethod
    def load(cls, directory: Path, params: IndexParams = IndexParams()) -> "ImageIndex":
        import faiss

        loaded = faiss.read_index(str(directory / "index.faiss"))
        index = cls(loaded.d, params)
        index._index = loaded
        index._index.hnsw.efSearch = params.search_breadth
        text = (directory / "ids.txt").read_text()
        index.ids = text.split("\n") if text else []
        index._position = {animal_id: i for i, animal_id in enumerate(index.ids)}
        if len(index.ids) != loaded.ntotal:
            raise ValueError(f"{directory}: {len(index.ids)} ids for {loaded.ntotal} vectors")
        return index


def exact_neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """Each vector's k nearest others by cosine similarity, best first (brute force)."""
    unit = normalised(vectors)
    neighbours = []
    for start in range(0, len(unit), 1024):
        similarity = unit[start : start + 1024] @ unit.T
        rows = np.arange(len(similarity))
        similarity[rows, rows + start] = -np.inf  # never itself
        top = np.argpartition(-similarity, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1)
        neighbours.append(np.take_along_axis(top, order, axis=1))
    return np.concatenate(neighbours)


def index_neighbours(index: ImageIndex, k: int) -> np.ndarray:
    """Each indexed post's k nearest others as the index finds them (positions)."""
    positions, _ = index.search(index._index.reconstruct_n(0, len(index)), k + 1)
    rows = []
    for own, found in enumerate(positions):
        others = [p for p in found if p != own and p >= 0][:k]
        rows.append(others + [-1] * (k - len(others)))
    return np.asarray(rows)


def recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    """The share of the exact k nearest that the index found, over every query."""
    k = exact.shape[1]
    return float(np.mean([len(set(f) & set(e)) / k for f, e in zip(found, exact, strict=True)]))


def precision_at(neighbours: np.ndarray, labels: Sequence[str]) -> float:
    """The share of each post's neighbours that carry its label, over every post."""
    kinds = np.asarray(labels)
    return float((kinds[neighbours] == kinds[:, None]).mean())


def chance(labels: Sequence[str]) -> float:
    """What `precision_at` would be with neighbours drawn at random among the others."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    n = counts.sum()
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))
