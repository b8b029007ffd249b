"""Similar words learned from the posts and the search logs, and their evaluation.

Two words are similar when they are used alike and satisfy the same searches:

- used alike (distributional): the words that appear beside them in the posts' names and
  descriptions, as positive pointwise mutual information (PPMI) vectors, compared by
  cosine. Alone this also pairs a Pomeranian with a Chihuahua (both are said of dogs);
- satisfying the same searches: the posts users selected after searching a word say the
  other word more often than posts do at large, as normalized PMI (NPMI, in [-1, 1])
  between the query's words and the selected posts' words. Alone this also pairs 猫 with
  ペルシャ (what a cat search selects are cats of breeds).

The similarity of a word to another is the product of the two (both must hold), kept when
at least `min_similarity`, the `top_k` most similar per word. Words are the normal forms
of `mlsys.aianimals.japanese` (ねこ and 猫 are one already); only the logged searches before
the test period and the posts made before it are learned from.

Evaluated twice on the local search engine itself, with and without the similar words:
on the latest logged searches (the gate: the share of their selected posts a search
finds), and, where the generator's `synonym_queries.json` is at hand, on those held-out
queries against what they mean (recall of the category or breed, precision@10)."""

import hashlib
import json
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from mlsys.aianimals.indexing import documents_query, to_document
from mlsys.aianimals.japanese import Untokenizable, phrase_words
from mlsys.aianimals.search import RESULT_WINDOW, AnimalDocument, SearchQuery
from mlsys.aianimals.similar_words import SimilarWords
from mlsys.aianimals.tables import AccessLog, Animal

SELECTED = ("select", "see_long", "like")  # what counts as a search's post being chosen


class NotEnoughSearches(ValueError):
    """Too few logged searches with a selected post to learn or evaluate similar words."""


@dataclass(frozen=True)
class WordParams:
    min_count: int = 5  # posts a word must appear in to be learned
    min_pair_searches: int = 3  # selected posts a (query word, post word) pair needs
    min_similarity: float = 0.1
    top_k: int = 3
    test_share: float = 0.2  # the latest logged searches: evaluation only


@dataclass
class WordData:
    documents: list[AnimalDocument]  # every post, as the search engine holds it
    searches: pd.DataFrame  # search_id, time, phrases, filters, selected (post ids), split
    cutoff: pd.Timestamp  # when the test period begins
    fingerprint: str


def read_word_data(engine: Engine, test_share: float, min_searches: int = 20) -> WordData:
    """Every post, and the logged searches with their selected posts, split by time."""
    with Session(engine) as session:
        rows = session.execute(
            documents_query().where(Animal.deactivated.is_(False)).order_by(Animal.id)
        )
        documents = [to_document(row) for row in rows]
    with engine.connect() as connection:
        logs = pd.read_sql(
            select(
                AccessLog.search_id,
                AccessLog.animal_id,
                AccessLog.action,
                AccessLog.phrases,
                AccessLog.animal_category_id,
                AccessLog.animal_subcategory_id,
                AccessLog.created_at,
            ),
            connection,
        )
    logs["created_at"] = pd.to_datetime(logs["created_at"], utc=True)
    selected = logs[logs["action"].isin(SELECTED)]
    searches = (
        logs.groupby("search_id", sort=False)
        .agg(
            time=("created_at", "min"),
            phrases=("phrases", "first"),
            animal_category_id=("animal_category_id", "first"),
            animal_subcategory_id=("animal_subcategory_id", "first"),
        )
        .join(selected.groupby("search_id")["animal_id"].agg(lambda ids: sorted(set(ids))))
        .rename(columns={"animal_id": "selected"})
        .dropna(subset=["selected"])
        .reset_index()
        .sort_values(["time", "search_id"], ignore_index=True)
    )
    searches["phrases"] = searches["phrases"].map(
        lambda p: list(json.loads(p) if isinstance(p, str) else p)
    )
    if len(searches) < min_searches:
        raise NotEnoughSearches(
            f"{len(searches)} logged searches with a selected post: at least {min_searches} needed"
        )
    test_start = int(len(searches) * (1 - test_share))
    searches["split"] = np.where(np.arange(len(searches)) < test_start, "train", "test")
    cutoff = searches["time"].iloc[test_start]
    digest = hashlib.sha256()
    for document in documents:
        digest.update(f"{document.id}\0{document.name}\0{document.description}\0".encode())
    digest.update(pd.util.hash_pandas_object(searches[["search_id"]]).to_numpy().tobytes())
    return WordData(documents, searches, cutoff, digest.hexdigest()[:16])


def _words_of(text: str) -> list[str] | None:
    """The text's distinct word keys; None when the tokenizer refuses it."""
    try:
        return list(dict.fromkeys(key for _, key in phrase_words(text)))
    except Untokenizable:
        return None


def _ppmi(counts: sparse.csr_matrix) -> sparse.csr_matrix:
    """PPMI of a co-occurrence count matrix (symmetric, zero diagonal)."""
    counts = counts.tocoo()
    total = counts.sum()
    rows = np.asarray(counts.sum(axis=1)).ravel()
    pmi = np.log(counts.data * total / (rows[counts.row] * rows[counts.col]))
    keep = pmi > 0
    return sparse.csr_matrix((pmi[keep], (counts.row[keep], counts.col[keep])), shape=counts.shape)


def learn_similar_words(
    post_texts: list[str],
    queries: list[tuple[list[str], list[int]]],
    params: WordParams,
    progress: Callable[[str], None] = lambda _: None,
) -> tuple[SimilarWords, dict]:
    """Similar words from the posts' texts and searches (the phrases typed, the indexes of
    the posts selected); returns the table and what was learned from (for the report)."""
    tokenized = [_words_of(text) for text in post_texts]
    # A post the tokenizer refuses is skipped (and counted), not the end of the job.
    untokenizable = sum(words is None for words in tokenized)
    post_words = [words or [] for words in tokenized]
    progress(f"{len(post_texts)} posts tokenised, {untokenizable} refused by the tokenizer")
    frequency: dict[str, int] = {}
    for words in post_words:
        for word in words:
            frequency[word] = frequency.get(word, 0) + 1
    vocabulary = sorted(w for w, n in frequency.items() if n >= params.min_count)
    column = {word: i for i, word in enumerate(vocabulary)}
    size = len(vocabulary)

    def incidence(lists: list[list[str]]) -> sparse.csr_matrix:
        rows = [i for i, words in enumerate(lists) for w in words if w in column]
        cols = [column[w] for words in lists for w in words if w in column]
        data = np.ones(len(rows))
        return sparse.csr_matrix((data, (rows, cols)), shape=(len(lists), size))

    posts = incidence(post_words)  # post x word, 0/1
    together = (posts.T @ posts).tocsr()
    said = np.asarray(together.diagonal()).ravel()  # posts saying each word
    together.setdiag(0)
    together.eliminate_zeros()
    context = _ppmi(together)
    norms = np.sqrt(np.asarray(context.multiply(context).sum(axis=1)).ravel())
    context = sparse.diags(1 / np.maximum(norms, 1e-12)) @ context  # rows of unit length

    # One row per (search, selected post): the query's words and the post's words.
    pairs = [(s, p) for s, (_, chosen) in enumerate(queries) for p in chosen]
    query_words = [
        list(dict.fromkeys(w for phrase in phrases for w in _words_of(phrase) or []))
        for phrases, _ in queries
    ]
    typed = incidence([query_words[s] for s, _ in pairs])
    chosen = posts[[p for _, p in pairs]] if pairs else sparse.csr_matrix((0, size))
    joint = (typed.T @ chosen).tocoo()  # query word x post word: selected posts saying it
    total = max(len(pairs), 1)
    p_typed = np.asarray(typed.sum(axis=0)).ravel() / total
    p_said = np.asarray(chosen.sum(axis=0)).ravel() / total
    table: dict[str, list[tuple[str, float]]] = {}
    for a, b, n in zip(joint.row, joint.col, joint.data, strict=True):
        if a == b or n < params.min_pair_searches:
            continue
        p_joint = n / total
        if p_joint >= 1:
            continue
        npmi = math.log(p_joint / (p_typed[a] * p_said[b])) / -math.log(p_joint)
        cosine = float(context[a].multiply(context[b]).sum())
        # Words said in one breath (メイン and クーン, a breed's and its category's) are
        # not each other's substitutes: how often a post saying one says the other.
        apart = 1 - together[a, b] / said[a]
        similarity = float(npmi * cosine * apart)
        if similarity >= params.min_similarity:
            table.setdefault(vocabulary[a], []).append((vocabulary[b], round(similarity, 4)))
    for word, similar in table.items():
        table[word] = sorted(similar, key=lambda s: (-s[1], s[0]))[: params.top_k]
    learned = {
        "posts": len(post_texts),
        "untokenizable_posts": untokenizable,
        "searches": len(queries),
        "selected": len(pairs),
        "vocabulary": size,
        "words_with_similar": len(table),
    }
    progress(f"{size} words, {len(table)} with similar words")
    return SimilarWords(table), learned


def train_words(
    data: WordData, params: WordParams, progress: Callable[[str], None] = lambda _: None
) -> tuple[SimilarWords, dict]:
    """Learn from the posts made before the test period and the searches before it."""
    cutoff = data.cutoff.to_pydatetime()
    known = [
        d for d in data.documents
        if d.created_at.replace(tzinfo=d.created_at.tzinfo or UTC) < cutoff
    ]  # fmt: skip
    position = {d.id: i for i, d in enumerate(known)}
    train = data.searches[data.searches["split"] == "train"]
    queries = [
        (list(phrases), [position[i] for i in selected if i in position])
        for phrases, selected in zip(train["phrases"], train["selected"], strict=True)
    ]
    return learn_similar_words([f"{d.name} {d.description}" for d in known], queries, params,
                               progress)  # fmt: skip


class ExpansionEvaluator:
    """The local search engine over every post (in a temporary folder), asked each query
    with and without similar words."""

    def __init__(self, documents: list[AnimalDocument]):
        from mlsys.aianimals.local_search import LocalSearchIndex

        self._folder = tempfile.TemporaryDirectory(prefix="similar-words-")
        self.index = LocalSearchIndex(Path(self._folder.name) / "search.sqlite")
        self.index.upsert(documents)
        self._found: dict[tuple[str, tuple[str, ...]], list[str]] = {}

    def close(self) -> None:
        self._folder.cleanup()

    def found(self, phrases: list[str], name: str, words: SimilarWords | None) -> list[str]:
        """The ids of every post the phrases find (with the similar words of the model
        called `name`, if any), best first."""
        key = (name, tuple(phrases))
        if key not in self._found:
            similar = words.expand(phrases) if words is not None else []
            query = SearchQuery(phrases=phrases, similar_words=similar, limit=RESULT_WINDOW)
            self._found[key] = [hit.id for hit in self.index.search(query).results]
        return self._found[key]


def evaluate_logged(
    data: WordData, evaluator: ExpansionEvaluator, models: Mapping[str, SimilarWords | None]
) -> dict[str, dict[str, float]]:
    """Per model: the share of each test search's selected posts that its phrases find,
    averaged over the searches. (A selected post passed the search's filters: they are left
    out, as they cannot change whether the phrases find it.)"""
    test = data.searches[data.searches["split"] == "test"]
    scores: dict[str, dict[str, float]] = {}
    for name, words in models.items():
        recalls = []
        for phrases, selected in zip(test["phrases"], test["selected"], strict=True):
            found = set(evaluator.found(phrases, name, words))
            recalls.append(sum(i in found for i in selected) / len(selected))
        scores[name] = {"recall": round(float(np.mean(recalls)), 4) if recalls else 0.0,
                        "searches": len(recalls)}  # fmt: skip
    return scores


def _means(document: AnimalDocument, query: dict) -> bool:
    """Whether a post is of the category or breed a held-out query means."""
    category, subcategory = query["animal_category_id"], query["animal_subcategory_id"]
    return (category is None or document.animal_category_id == category) and (
        subcategory is None or document.animal_subcategory_id == subcategory
    )


def evaluate_synonym_queries(
    queries: list[dict],
    documents: list[AnimalDocument],
    evaluator: ExpansionEvaluator,
    models: Mapping[str, SimilarWords | None],
) -> dict:
    """Per model: mean recall (of the posts of the category or breed a query means) and
    precision@10 over the held-out queries, and each query's figures."""
    report: dict = {"queries": len(queries)}
    per_query: dict[str, dict] = {}
    for name, words in models.items():
        recalls, precisions = [], []
        for q in queries:
            relevant = {d.id for d in documents if _means(d, q)}
            found = evaluator.found([q["query"]], name, words)
            recall = sum(i in relevant for i in found) / max(len(relevant), 1)
            top = found[:10]
            precision = sum(i in relevant for i in top) / 10
            recalls.append(recall)
            precisions.append(precision)
            per_query.setdefault(q["query"], {"relevant": len(relevant)})[name] = {
                "recall": round(recall, 4), "precision@10": round(precision, 4),
                "found": len(found),
            }  # fmt: skip
        report[name] = {"recall": round(float(np.mean(recalls)), 4),
                        "precision@10": round(float(np.mean(precisions)), 4)}  # fmt: skip
    report["per_query"] = per_query
    return report
