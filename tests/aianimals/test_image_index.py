"""The similar-image index: its answers against exact search, their order, the query post
and filtered posts left out, posts added later, a saved index loaded back, and the
arithmetic of the figures `build-image-index` reports."""

import numpy as np
import pytest

from mlsys.aianimals.image_index import (
    ImageIndex,
    chance,
    exact_neighbours,
    index_neighbours,
    precision_at,
    recall_at,
)


def clustered(n: int, dimension: int = 32, clusters: int = 20, seed: int = 0):
    """Vectors around `clusters` centres, as embeddings of photos of a few kinds are."""
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, clusters, n)
    centres = rng.normal(size=(clusters, dimension))
    vectors = centres[kinds] + 0.7 * rng.normal(size=(n, dimension))
    return [f"post-{i}" for i in range(n)], vectors.astype(np.float32), kinds


def test_the_index_finds_what_exact_search_finds_and_in_its_order():
    ids, vectors, _ = clustered(3000)
    index = ImageIndex.build(ids, vectors)
    assert recall_at(index_neighbours(index, 10), exact_neighbours(vectors, 10)) >= 0.95

    exact = exact_neighbours(vectors, 10)[0]
    found = index.similar("post-0", 10)
    assert [animal_id for animal_id, _ in found] == [ids[p] for p in exact]
    similarities = [similarity for _, similarity in found]
    assert similarities == sorted(similarities, reverse=True)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    assert similarities[0] == pytest.approx(float(unit[0] @ unit[exact[0]]), abs=1e-5)


def test_the_query_post_and_filtered_posts_are_never_answered():
    ids, vectors, _ = clustered(500)
    vectors[1] = vectors[0]  # the same photo posted twice: the other copy is the best answer
    index = ImageIndex.build(ids, vectors)
    assert index.similar("post-0", 3)[0][0] == "post-1"
    inactive = {animal_id for animal_id, _ in index.similar("post-0", 200)}
    kept = index.similar("post-0", 5, allowed=lambda ids: set(ids) - inactive)
    assert len(kept) == 5 and not inactive & {animal_id for animal_id, _ in kept}
    assert all(animal_id != "post-0" for animal_id, _ in index.similar("post-0", 499))
    assert len(index.similar("post-0", 1000)) == 499  # all there is


def test_posts_added_later_are_found_once_and_a_saved_index_loads_back(tmp_path):
    ids, vectors, _ = clustered(400)
    index = ImageIndex.build(ids[:300], vectors[:300])
    index.add(ids[300:], vectors[300:])
    index.add(ids[350:], vectors[350:] + 1)  # redelivered: the first vector stays
    assert len(index) == 400 and "post-399" in index
    np.testing.assert_allclose(
        index.vector("post-399"), vectors[399] / np.linalg.norm(vectors[399]), atol=1e-6
    )
    index.save(tmp_path / "index")
    loaded = ImageIndex.load(tmp_path / "index")
    assert loaded.ids == index.ids
    assert loaded.similar("post-350", 10) == index.similar("post-350", 10)


def test_precision_and_its_chance_level():
    labels = ["cat", "cat", "cat", "dog"]
    neighbours = np.array([[1, 2], [0, 3], [0, 1], [0, 1]])
    assert precision_at(neighbours, labels) == pytest.approx((2 + 1 + 2 + 0) / 8)
    # Pairs of distinct posts sharing a label: 3 * 2 of 4 * 3.
    assert chance(labels) == pytest.approx(6 / 12)
    _, vectors, kinds = clustered(1000)
    near = exact_neighbours(vectors, 10)
    assert precision_at(near, kinds) > 3 * chance(kinds)  # the clusters are found
    assert recall_at(near, near) == 1.0
