"""Offline evaluation of rankers on the held-out (test) searches, two ways:

- logged clicks: the test searches whose shown order did not depend on relevance (here
  the text-score order, which on these short texts is close to a shuffle; in production,
  an exploration variant behind the A/B proxy), their results reordered by each ranker and
  scored by what the user did with them (ACTION_GRADE gains); MRR of the first selected
  result. Where the order was the logging policy's own (likes, recency), whatever that
  policy put on top was also examined most, and a ranker that copies the policy would
  look best: measured here, inverse propensity weights did not remove that bias, while
  the randomized searches rank the models as the hidden quality does;
- hidden quality: each test search answered again from every post that matched it and
  existed then, scored by the generator's hidden quality (`quality_gain`), against the
  ideal order of all those posts; MRR of the first post of grade 2 or more (q >= 0.4).

Baselines beside the models: `likes` (most liked then), `text_score` (the local engine's
own BM25 order, through its TermIndex) and
`recency` (newest first). The models reorder the RERANK_CANDIDATES most liked matches,
as the API's learn_to_rank does.
"""

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlsys.aianimals.japanese import Untokenizable, index_terms
from mlsys.aianimals.local_search import TermIndex, query_words
from mlsys.aianimals.ranking import (
    RERANK_CANDIDATES,
    logged_gain,
    ndcg,
    quality_gain,
    reciprocal_rank,
)
from mlsys.aianimals.ranking_data import RankingData
from mlsys.aianimals.search import SearchQuery

Scorer = Callable[[np.ndarray], Any]  # feature rows -> scores (higher first)
BASELINES = ("likes", "text_score", "recency")


class TextScores:
    """Which posts match a search and their text score, as the local engine finds and
    ranks them (its TermIndex over the same terms), one slot per post in the order given."""

    def __init__(self, names: list[str], descriptions: list[str]):
        self.index = TermIndex(capacity=max(len(names), 1))
        self.untokenizable: set[int] = set()  # posts a text of which the tokenizer refused
        for post, texts in enumerate(zip(names, descriptions, strict=True)):
            terms: list[list[str]] = []
            for text in texts:
                try:
                    terms.append(index_terms(text))
                except Untokenizable:
                    terms.append([])  # matched by nothing, counted and reported
                    self.untokenizable.add(post)
            self.index.add(*terms)
        self._cache: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}

    def search(self, phrases: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(matches, score) over all posts."""
        if phrases not in self._cache:
            self._cache[phrases] = self.index.match(query_words(SearchQuery(phrases=list(phrases))))
        return self._cache[phrases]


def _summary(values: dict[str, list[float]]) -> dict[str, float]:
    return {name: round(float(np.mean(v)), 4) for name, v in values.items() if v}


def evaluate_logged(
    data: RankingData,
    rankers: Mapping[str, Scorer],
    terms: TextScores | None = None,
    split: str = "test",
) -> dict:
    """NDCG@10 and MRR of each ranker (and, given `terms`, each baseline) on a split's
    randomized logged searches."""
    chosen = (data.searches["split"].to_numpy() == split) & (
        data.searches["sort_by"].to_numpy() == "score"
    )
    test = np.flatnonzero(chosen)
    shown = data.impressions[data.impressions["search"].isin(test)]
    search, post = shown["search"].to_numpy(), shown["post"].to_numpy()
    time = data.searches["time"].to_numpy()[search]
    phrases = data.searches["phrases"].to_numpy()
    features = data.features(search, post)
    scores = {name: rank(features) for name, rank in rankers.items()}
    if terms is not None:
        scores["likes"] = data.histories["likes"].before(post, time)
        scores["text_score"] = np.array(
            [terms.search(phrases[s])[1][p] for s, p in zip(search, post, strict=True)]
        )
        scores["recency"] = data.posts["created"].to_numpy()[post].astype(float)
    gains = logged_gain(shown["grade"].to_numpy())
    selected = shown["grade"].to_numpy() >= 1
    results: dict[str, dict[str, list[float]]] = {n: {"ndcg@10": [], "mrr": []} for n in scores}
    bounds = np.flatnonzero(np.diff(search, prepend=-1, append=-1))
    # Ties are broken at random, never by the logged position: keeping the shown order
    # among equal scores would credit a ranker with the position bias of the logs.
    tiebreak = np.random.default_rng(0).random(len(shown))
    for start, end in itertools.pairwise(bounds):
        for name, score in scores.items():
            order = start + np.lexsort((tiebreak[start:end], -score[start:end]))
            value = ndcg(gains[order], gains[start:end])
            if value is not None:
                results[name]["ndcg@10"].append(value)
                results[name]["mrr"].append(reciprocal_rank(selected[order]))
    return {name: _summary(values) for name, values in results.items()}


def evaluate_hidden(
    data: RankingData,
    rankers: Mapping[str, Scorer],
    terms: TextScores,
    quality: pd.Series,
    max_searches: int = 2000,
) -> dict:
    """NDCG@10 and MRR against the hidden quality, each test search answered again from
    every matching post that existed then (at most `max_searches`, evenly spread)."""
    test = np.flatnonzero(data.searches["split"].to_numpy() == "test")
    test = test[np.linspace(0, len(test) - 1, min(max_searches, len(test))).astype(int)]
    posts = data.posts
    gain_of = quality_gain(quality.reindex(posts["id"]).fillna(0).to_numpy())
    created = posts["created"].to_numpy()
    active = ~posts["deactivated"].to_numpy()
    category = posts["animal_category_id"].to_numpy()
    subcategory = posts["animal_subcategory_id"].to_numpy()
    searches = data.searches
    candidates: list[tuple[int, np.ndarray, np.ndarray]] = []  # search, matches, top liked
    first: dict[str, list[np.ndarray]] = {name: [] for name in (*BASELINES, *rankers)}
    for s in test:
        row = searches.iloc[s]
        matched, bm25 = terms.search(row["phrases"])
        matched = matched & active & (created < row["time"])
        if pd.notna(row["animal_category_id"]):
            matched &= category == row["animal_category_id"]
        if pd.notna(row["animal_subcategory_id"]):
            matched &= subcategory == row["animal_subcategory_id"]
        posts_matched = np.flatnonzero(matched)
        if len(posts_matched) == 0:
            continue
        likes = data.histories["likes"].before(
            posts_matched, np.full(len(posts_matched), row["time"])
        )
        by_likes = posts_matched[np.argsort(-likes, kind="stable")]
        first["likes"].append(by_likes[:10])
        first["text_score"].append(
            posts_matched[np.argsort(-bm25[posts_matched], kind="stable")][:10]
        )
        first["recency"].append(
            posts_matched[np.argsort(-created[posts_matched], kind="stable")][:10]
        )
        candidates.append((s, posts_matched, by_likes[:RERANK_CANDIDATES]))
    if candidates:
        search = np.concatenate([np.full(len(c), s) for s, _, c in candidates])
        post = np.concatenate([c for _, _, c in candidates])
        features = data.features(search, post)
        bounds = np.cumsum([0] + [len(c) for _, _, c in candidates])
        for name, rank in rankers.items():
            score = rank(features)
            for (_, _, top), start, end in zip(candidates, bounds[:-1], bounds[1:], strict=True):
                first[name].append(top[np.argsort(-score[start:end], kind="stable")][:10])
    results = {}
    for name, lists in first.items():
        values: dict[str, list[float]] = {"ndcg@10": [], "mrr": []}
        for ranked, (_, matched, _) in zip(lists, candidates, strict=True):
            value = ndcg(gain_of[ranked], gain_of[matched])
            if value is not None:
                values["ndcg@10"].append(value)
                values["mrr"].append(reciprocal_rank(gain_of[ranked] >= 3))
        results[name] = _summary(values)
    return results


def gap_closed(ranker: float, likes: float) -> float:
    """How much of the gap between sort-by-likes and the ideal order a ranker closes."""
    return (ranker - likes) / (1 - likes) if likes < 1 else 0.0
