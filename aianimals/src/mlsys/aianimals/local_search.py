"""The local search engine: posts stored in one SQLite file, searched in memory.

The file (under MLSYS_HOME) is the store and has one writer, the search-index consumer;
each reader (an API process) keeps the posts' terms as an inverted index in memory and
scores matches with BM25 in numpy. Scoring every match of a broad query (ねこ: about half
the posts) in SQLite FTS5 cost more than everything else a search does (measured: 7.4 ms
of a search at 10,000 posts, against 0.2 ms to count the matches), and ranking needs every
match scored. Every write bumps a change number; a reader compares it with the one it has
applied before each search (one indexed read) and applies the rows written since, so it
answers from what is committed, as it did when it queried the file.

Ranking is FTS5's bm25 (k1 = 1.2, b = 0.75), a match in the name weighing twice: each form
of a query word (normal form, reading) is a phrase with its own IDF. A similar word the
query carries matches in the word's place, its term frequency scaled by its weight.
"""

import json
import math
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mlsys.aianimals.japanese import Untokenizable, index_terms, query_terms
from mlsys.aianimals.search import (
    AnimalDocument,
    SearchEngineError,
    SearchHit,
    SearchQuery,
    SearchResult,
    SortBy,
)
from mlsys.common.logging import get_logger

log = get_logger(__name__)

SCHEMA_VERSION = 2  # 1 (no user_version): an FTS5 table beside `animals`
_K1, _B = 1.2, 0.75
_NAME_WEIGHT, _DESCRIPTION_WEIGHT = 2.0, 1.0
_FILTERS = (
    "animal_category_name_en",
    "animal_category_name_ja",
    "animal_subcategory_name_en",
    "animal_subcategory_name_ja",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS animals (
    rowid INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, document TEXT NOT NULL,
    name_terms TEXT NOT NULL, description_terms TEXT NOT NULL, change INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS animals_by_change ON animals (change);
-- Posts deleted since they were written, so that readers drop them: an id is here or in
-- animals, never in both.
CREATE TABLE IF NOT EXISTS removed (id TEXT PRIMARY KEY, change INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS removed_by_change ON removed (change);
CREATE TABLE IF NOT EXISTS changes (last INTEGER NOT NULL);
INSERT INTO changes (last) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM changes);
"""


def _id_key(animal_id: str) -> int:
    """An integer in the order of the id (a 32-digit hex) for numpy sorts; ids that are not
    hex share 0 and are told apart by the exact sort of ties."""
    try:
        return int(animal_id[:16].ljust(16, "0"), 16) if len(animal_id) == 32 else 0
    except ValueError:
        return 0


def _terms(animal_id: str, text: str) -> str:
    """A text's index terms; none for a text the tokenizer refuses (the post is still
    indexed, found by its other fields, and the refusal logged), never a failed batch."""
    try:
        return " ".join(index_terms(text))
    except Untokenizable as error:
        log.warning("text not indexed: the tokenizer refuses it post=%s error=%s", animal_id, error)
        return ""


class _Postings:
    """A term's posts (slots) and how much it weighs in each (2 in the name, 1 in the
    description, 3 in both), appended to as posts are written."""

    __slots__ = ("_arrays", "slots", "weights")

    def __init__(self) -> None:
        self.slots: list[int] = []
        self.weights: list[float] = []
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, slot: int, weight: float) -> None:
        self.slots.append(slot)
        self.weights.append(weight)
        self._arrays = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = (np.array(self.slots, dtype=np.int64), np.array(self.weights))
        return self._arrays


# The per-slot columns of the memory (beside the terms') and their types.
_COLUMNS = {
    "rowid": np.int64,  # the file's: salts the random order, as it did in SQL
    "likes": np.int64,
    "created": np.int64,  # microseconds since the epoch
    "id_key": np.uint64,
    **{name: np.int32 for name in _FILTERS},  # codes of the filters' values
}


@dataclass(frozen=True)
class QueryWord:
    """A word of a query: its forms (normal form, reading), one of which must match, and
    its similar words (terms of the index: a reading or a normal form) with their
    weights."""

    forms: tuple[str, ...]
    similar: tuple[tuple[str, float], ...] = ()


def query_words(query: SearchQuery) -> list[QueryWord]:
    """The words of every phrase of the query, each with the similar words it carries."""
    words = []
    for phrase in query.phrases:
        for forms in query_terms(phrase):
            similar = tuple(
                (s.similar, s.weight)
                for s in query.similar_words
                if s.phrase == phrase and s.word == forms[-1]
            )
            words.append(QueryWord(forms, similar))
    return words


class TermIndex:
    """The posts' terms, one slot per post, and how the local engine ranks them: BM25 as
    FTS5 computes it (k1 = 1.2, b = 0.75, IDF floored), a match in the name weighing twice.
    The engine searches through it and the ranker's offline evaluation scores its
    `text_score` baseline with it, so the baseline is the engine's order."""

    def __init__(self, capacity: int = 1024) -> None:
        self.size = 0  # slots taken, dead ones included
        self.live = 0
        self.total_length = 0.0
        self.alive = np.zeros(capacity, dtype=bool)
        self.length = np.zeros(capacity)  # terms in the name and the description
        self.postings: dict[str, _Postings] = {}

    def add(self, name_terms: list[str], description_terms: list[str]) -> int:
        """A new post's slot."""
        if self.size == len(self.alive):
            self.alive = np.concatenate([self.alive, np.zeros(len(self.alive), dtype=bool)])
            self.length = np.concatenate([self.length, np.zeros(len(self.length))])
        slot = self.size
        self.size += 1
        self.alive[slot] = True
        self.length[slot] = len(name_terms) + len(description_terms)
        self.live += 1
        self.total_length += self.length[slot]
        weights: dict[str, float] = {}
        for term in name_terms:
            weights[term] = weights.get(term, 0.0) + _NAME_WEIGHT
        for term in description_terms:
            weights[term] = weights.get(term, 0.0) + _DESCRIPTION_WEIGHT
        for term, weight in weights.items():
            postings = self.postings.get(term)
            if postings is None:
                postings = self.postings[term] = _Postings()
            postings.add(slot, weight)
        return slot

    def remove(self, slot: int) -> None:
        self.alive[slot] = False
        self.live -= 1
        self.total_length -= float(self.length[slot])

    def match(self, words: list[QueryWord]) -> tuple[np.ndarray, np.ndarray]:
        """Over every slot: whether the live post matches each word (one of its forms, or
        of its similar words), and its score (0 without words)."""
        size = self.size
        matched = self.alive[:size].copy()
        score = np.zeros(size)
        if not words:
            return matched, score
        average = self.total_length / max(self.live, 1)
        norm = _K1 * (1 - _B + _B * self.length[:size] / max(average, 1e-9))
        for word in words:
            in_word = np.zeros(size, dtype=bool)
            typed_idf = 0.0  # the most any typed form weighs: the cap of a similar word's
            for form in dict.fromkeys(word.forms):
                found = self._live_postings(form)
                if found is None:
                    continue
                slots, weights, idf = found
                typed_idf = max(typed_idf, idf)
                score[slots] += idf * weights * (_K1 + 1) / (weights + norm[slots])
                in_word[slots] = True
            # A similar word counts as the word typed, written less surely: its term
            # frequency is scaled by its weight (< 1) and its IDF is at most the typed
            # word's, so a post saying it scores below one saying the word typed.
            for similar, weight in word.similar:
                found = self._live_postings(similar)
                if found is None:
                    continue
                slots, weights, idf = found
                idf = min(idf, typed_idf) if typed_idf else idf
                weights = weights * weight
                score[slots] += idf * weights * (_K1 + 1) / (weights + norm[slots])
                in_word[slots] = True
            matched &= in_word
        return matched, score

    def _live_postings(self, form: str) -> tuple[np.ndarray, np.ndarray, float] | None:
        """The live posts of a term, their weights and the term's IDF (None: no post)."""
        postings = self.postings.get(form)
        if postings is None:
            return None
        slots, weights = postings.arrays()
        live = self.alive[slots]
        slots, weights = slots[live], weights[live]
        if len(slots) == 0:
            return None
        idf = math.log((self.live - len(slots) + 0.5) / (len(slots) + 0.5))
        return slots, weights, idf if idf > 0 else 1e-6  # as FTS5: a common term still counts


class _InMemoryIndex:
    """The posts of the file at change `applied`: one slot per written version of a post
    (a rewrite kills the old slot and takes a new one), its terms in a TermIndex and its
    other columns as numpy arrays."""

    def __init__(self, capacity: int = 1024) -> None:
        self.applied = -1  # nothing yet: the first catch-up reads every row (change >= 0)
        self.terms = TermIndex(capacity)
        self.slot_of: dict[str, int] = {}
        self.ids: list[str] = []
        self.documents: list[str] = []
        # Parsed documents of live slots, made when first answered: a broad query's 100
        # candidates cost more to parse and validate than to find.
        self.parsed: dict[int, SearchHit] = {}
        self.codes: dict[str, dict[str, int]] = {name: {} for name in _FILTERS}
        self.column = {name: np.zeros(capacity, dtype) for name, dtype in _COLUMNS.items()}

    def add(self, rowid: int, animal_id: str, document: str, name: str, description: str):
        self.remove(animal_id)
        slot = self.terms.add(name.split(), description.split())
        if slot == len(self.column["rowid"]):
            for column, old in self.column.items():
                self.column[column] = np.concatenate([old, np.zeros(len(old), old.dtype)])
        fields = json.loads(document)
        created = datetime.fromisoformat(fields["created_at"])
        values = {
            "rowid": rowid,
            "likes": fields["like"],
            "created": int(created.replace(tzinfo=created.tzinfo or UTC).timestamp() * 1e6),
            "id_key": _id_key(animal_id),
        }
        for name_of_filter in _FILTERS:
            codes = self.codes[name_of_filter]
            values[name_of_filter] = codes.setdefault(fields[name_of_filter], len(codes))
        for column, value in values.items():
            self.column[column][slot] = value
        self.slot_of[animal_id] = slot
        self.ids.append(animal_id)
        self.documents.append(document)

    def remove(self, animal_id: str) -> None:
        slot = self.slot_of.pop(animal_id, None)
        if slot is not None:
            self.parsed.pop(slot, None)
            self.terms.remove(slot)

    @property
    def wasteful(self) -> bool:
        """Dead slots outnumber live ones: rebuilding is cheaper than carrying them."""
        return self.terms.size > 2 * self.terms.live + 1024

    def search(self, query: SearchQuery, words: list[QueryWord]) -> tuple[int, list[SearchHit]]:
        """The number of matches of the query (its words: one of each word's forms, or of
        its similar words, must match) and the page's hits."""
        matched, score = self.terms.match(words)
        for name, value in query.filters().items():
            code = self.codes[name].get(value)
            if code is None:
                return 0, []
            matched &= self.column[name][: self.terms.size] == code
        candidates = np.flatnonzero(matched)
        page = self._ordered(candidates, score, query, bool(words))
        return len(candidates), [self._hit(slot, float(score[slot])) for slot in page]

    def _hit(self, slot: int, score: float) -> SearchHit:
        parsed = self.parsed.get(slot)
        if parsed is None:
            parsed = self.parsed[slot] = SearchHit(**json.loads(self.documents[slot]), score=0.0)
        return parsed.model_copy(update={"score": score})

    def _ordered(
        self, candidates: np.ndarray, score: np.ndarray, query: SearchQuery, scored: bool
    ) -> list[int]:
        """The slots of the page in the query's order; the last key is the id, as in the
        Elasticsearch engine (every key sorts ascending)."""
        start, stop = query.offset, query.offset + query.limit
        if start >= len(candidates):
            return []
        size, column = self.terms.size, self.column
        created, likes = column["created"][:size], column["likes"][:size]
        keys: list[np.ndarray]
        if query.sort_by is SortBy.created_at:
            keys = [-created]
        elif query.sort_by is SortBy.random:
            # A multiplicative hash of the row id, salted by the seed: a stable shuffle.
            keys = [((column["rowid"][:size] + query.seed) * 2654435761) % 4294967311]
        elif query.sort_by in (SortBy.like, SortBy.learn_to_rank):
            keys = [-likes, -score] if scored else [-likes]
        else:
            keys = [-score, -created] if scored else [-created]
        id_key = column["id_key"][:size]
        primary = keys[0][candidates]
        if stop < len(candidates):  # only what can reach the page: the first `stop`, ties
            kth = np.partition(primary, stop - 1)[stop - 1]
            candidates = candidates[primary <= kth]
        ordered = candidates[np.lexsort([id_key[candidates]] + [k[candidates] for k in keys[::-1]])]
        slots = ordered.tolist()
        same = id_key[ordered[1:]] == id_key[ordered[:-1]]
        for key in keys:
            same &= key[ordered[1:]] == key[ordered[:-1]]
        if same.any():  # ids that are not hex, or share 16 digits: compare them whole
            slots.sort(key=lambda s: (*(float(key[s]) for key in keys), self.ids[s]))
        return slots[start:stop]


class LocalSearchIndex:
    """The posts in a SQLite file (one writer), searched in memory by each reader."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        self._lock = threading.Lock()
        self._memory = _InMemoryIndex()
        with self._connection() as connection:
            self._create_or_upgrade(connection)

    def _connection(self) -> sqlite3.Connection:
        # One connection per thread: the API searches from a thread pool.
        if not hasattr(self._local, "connection"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            self._local.connection = connection
        return self._local.connection

    @staticmethod
    def _create_or_upgrade(connection: sqlite3.Connection) -> None:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        connection.execute("BEGIN IMMEDIATE")
        old: list[tuple] = []
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        if "animals_fts" in tables:  # version 1: the terms were in an FTS5 table
            old = connection.execute(
                "SELECT a.id, a.document, f.name, f.description FROM animals a "
                "JOIN animals_fts f ON f.rowid = a.rowid ORDER BY a.rowid"
            ).fetchall()
            connection.execute("DROP TABLE animals_fts")
            connection.execute("DROP TABLE animals")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                connection.execute(statement)
        connection.executemany(
            "INSERT INTO animals (id, document, name_terms, description_terms, change) "
            "VALUES (?, ?, ?, ?, 0)",
            old,
        )
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        connection.execute("COMMIT")

    def create_index(self) -> None:
        """Nothing to do: the file's tables are made when it is opened."""

    def _write(self, write) -> None:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            change = connection.execute(
                "UPDATE changes SET last = last + 1 RETURNING last"
            ).fetchone()[0]
            write(connection, change)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def upsert(self, documents: list[AnimalDocument]) -> None:
        rows = [
            (
                document.id,
                document.model_dump_json(),
                _terms(document.id, document.name),
                _terms(document.id, document.description),
            )
            for document in documents
        ]

        def write(connection: sqlite3.Connection, change: int) -> None:
            connection.executemany(
                "INSERT INTO animals (id, document, name_terms, description_terms, change) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "document = excluded.document, name_terms = excluded.name_terms, "
                "description_terms = excluded.description_terms, change = excluded.change",
                [(*row, change) for row in rows],
            )
            connection.executemany("DELETE FROM removed WHERE id = ?", [(r[0],) for r in rows])

        self._write(write)

    def delete(self, ids: list[str]) -> None:
        def write(connection: sqlite3.Connection, change: int) -> None:
            for animal_id in ids:
                if connection.execute(
                    "DELETE FROM animals WHERE id = ? RETURNING id", (animal_id,)
                ).fetchone():
                    connection.execute(
                        "INSERT OR REPLACE INTO removed (id, change) VALUES (?, ?)",
                        (animal_id, change),
                    )

        self._write(write)

    def count(self) -> int:
        return self._connection().execute("SELECT count(*) FROM animals").fetchone()[0]

    def _catch_up(self) -> None:
        """Apply what was committed since the memory's change (under the lock)."""
        connection = self._connection()
        last = connection.execute("SELECT last FROM changes").fetchone()[0]
        memory = self._memory
        if last == memory.applied:
            return
        if memory.wasteful:
            memory = self._memory = _InMemoryIndex(capacity=len(memory.column["rowid"]))
        connection.execute("BEGIN")  # one snapshot: the rows and the change they make up
        try:
            last = connection.execute("SELECT last FROM changes").fetchone()[0]
            written = connection.execute(
                "SELECT rowid, id, document, name_terms, description_terms FROM animals "
                "WHERE change > ? ORDER BY rowid",
                (memory.applied,),
            ).fetchall()
            removed = connection.execute(
                "SELECT id FROM removed WHERE change > ?", (memory.applied,)
            ).fetchall()
        finally:
            connection.execute("COMMIT")
        for row in written:
            memory.add(*row)
        for (animal_id,) in removed:
            memory.remove(animal_id)
        memory.applied = last

    def search(self, query: SearchQuery) -> SearchResult:
        words = query_words(query)
        if not words and any(phrase.strip() for phrase in query.phrases):
            return SearchResult(hits=0, results=[])  # only particles or symbols: no terms
        try:
            with self._lock:
                self._catch_up()
                hits, results = self._memory.search(query, words)
        except sqlite3.Error as error:  # a broken or locked index file
            raise SearchEngineError(f"search in {self.path}: {error}") from error
        return SearchResult(hits=hits, results=results)
