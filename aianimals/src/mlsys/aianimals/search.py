"""Search over animal posts: one interface, two engines.

- `LocalSearchIndex`: SQLite FTS5 in a file under MLSYS_HOME, over terms made by
  `mlsys.aianimals.japanese` (the local profile).
- `ElasticsearchIndex`: Elasticsearch with a kuromoji + ICU analyser (services profile),
  through the official `elasticsearch` client.

Both hold whole documents, so a search needs no database query. Phrases are ANDed (every
phrase must match the name or the description); filters are exact names.
"""

import json
import sqlite3
import threading
from datetime import datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Protocol

from elasticsearch import ApiError, BadRequestError, Elasticsearch, TransportError, helpers
from pydantic import BaseModel, Field, model_validator

from mlsys.aianimals.japanese import index_terms, query_terms
from mlsys.aianimals.settings import search_settings
from mlsys.common.settings import Profile, elasticsearch_settings, platform_settings


class SortBy(StrEnum):
    score = "score"
    like = "like"
    created_at = "created_at"
    random = "random"
    # The engines answer with its candidates (the most liked matches, as `like`); the API
    # reorders the first RERANK_CANDIDATES with the champion ranker.
    learn_to_rank = "learn_to_rank"


class AnimalFields(BaseModel):
    """A post as users see it: what search documents and the API's answers share."""

    id: str
    name: str
    description: str
    animal_category_id: int
    animal_category_name_en: str
    animal_category_name_ja: str
    animal_subcategory_id: int
    animal_subcategory_name_en: str
    animal_subcategory_name_ja: str
    user_id: str
    user_handle_name: str
    like: int
    created_at: datetime


class AnimalDocument(AnimalFields):
    photo_key: str  # the API turns it into a URL


# How deep paging reaches, in both engines: Elasticsearch's default index.max_result_window.
RESULT_WINDOW = 10_000


class SearchEngineError(RuntimeError):
    """The search engine failed, refused documents or could not be reached: retrying may
    succeed (the API answers 503, the index consumer retries with backoff)."""


class SearchQuery(BaseModel):
    animal_category_name_en: str | None = None
    animal_category_name_ja: str | None = None
    animal_subcategory_name_en: str | None = None
    animal_subcategory_name_ja: str | None = None
    phrases: list[str] = Field(default_factory=list)
    sort_by: SortBy = SortBy.score
    seed: int = 0  # order of sort_by=random (the same seed pages consistently)
    limit: int = 100
    offset: int = 0

    @model_validator(mode="after")
    def _within_the_window(self):
        if self.offset + self.limit > RESULT_WINDOW:
            raise ValueError(f"offset + limit must be at most {RESULT_WINDOW}")
        return self

    def filters(self) -> dict[str, str]:
        names = (
            "animal_category_name_en",
            "animal_category_name_ja",
            "animal_subcategory_name_en",
            "animal_subcategory_name_ja",
        )
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class SearchHit(AnimalDocument):
    score: float


class SearchResult(BaseModel):
    hits: int
    results: list[SearchHit]


class SearchIndex(Protocol):
    def create_index(self) -> None:
        """Create the index if it does not exist: done by its one writer, the search-index
        consumer, not by every API replica at start."""

    def upsert(self, documents: list[AnimalDocument]) -> None: ...
    def delete(self, ids: list[str]) -> None: ...
    def search(self, query: SearchQuery) -> SearchResult: ...
    def count(self) -> int: ...


# --- local: SQLite FTS5 ------------------------------------------------------------------

_FILTER_COLUMNS = {
    "animal_category_name_en": "category_en",
    "animal_category_name_ja": "category_ja",
    "animal_subcategory_name_en": "subcategory_en",
    "animal_subcategory_name_ja": "subcategory_ja",
}
_LOCAL_ORDER = {
    SortBy.score: "score DESC, a.created_at DESC, a.id",
    SortBy.like: "a.likes DESC, score DESC, a.id",
    SortBy.learn_to_rank: "a.likes DESC, score DESC, a.id",
    SortBy.created_at: "a.created_at DESC, a.id",
    # A multiplicative hash of the row id, salted by the seed: a stable shuffle.
    SortBy.random: "((a.rowid + :seed) * 2654435761) % 4294967311, a.id",
}


def _fts_phrase(forms: tuple[str, ...]) -> str:
    return "(" + " OR ".join('"' + form.replace('"', '""') + '"' for form in forms) + ")"


class LocalSearchIndex:
    """FTS5 over pre-tokenised terms; bm25 weighs a match in the name twice."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS animals (
        rowid INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, document TEXT NOT NULL,
        category_en TEXT, category_ja TEXT, subcategory_en TEXT, subcategory_ja TEXT,
        likes INTEGER NOT NULL, created_at TEXT NOT NULL);
    CREATE VIRTUAL TABLE IF NOT EXISTS animals_fts USING fts5(
        name, description, tokenize = 'unicode61 remove_diacritics 0');
    """

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        with self._connection() as connection:
            connection.executescript(self.SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        # One connection per thread: the API searches from a thread pool.
        if not hasattr(self._local, "connection"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30)
            connection.execute("PRAGMA journal_mode=WAL")
            self._local.connection = connection
        return self._local.connection

    def create_index(self) -> None:
        """Nothing to do: the file's tables are made when it is opened."""

    def upsert(self, documents: list[AnimalDocument]) -> None:
        with self._connection() as connection:
            for document in documents:
                row = connection.execute(
                    "INSERT INTO animals (id, document, category_en, category_ja, "
                    "subcategory_en, subcategory_ja, likes, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                    "document = excluded.document, category_en = excluded.category_en, "
                    "category_ja = excluded.category_ja, subcategory_en = excluded.subcategory_en, "
                    "subcategory_ja = excluded.subcategory_ja, likes = excluded.likes, "
                    "created_at = excluded.created_at RETURNING rowid",
                    (
                        document.id,
                        document.model_dump_json(),
                        document.animal_category_name_en,
                        document.animal_category_name_ja,
                        document.animal_subcategory_name_en,
                        document.animal_subcategory_name_ja,
                        document.like,
                        document.created_at.isoformat(),
                    ),
                ).fetchone()
                connection.execute("DELETE FROM animals_fts WHERE rowid = ?", row)
                connection.execute(
                    "INSERT INTO animals_fts (rowid, name, description) VALUES (?, ?, ?)",
                    (
                        row[0],
                        " ".join(index_terms(document.name)),
                        " ".join(index_terms(document.description)),
                    ),
                )

    def delete(self, ids: list[str]) -> None:
        with self._connection() as connection:
            for animal_id in ids:
                row = connection.execute(
                    "DELETE FROM animals WHERE id = ? RETURNING rowid", (animal_id,)
                ).fetchone()
                if row:
                    connection.execute("DELETE FROM animals_fts WHERE rowid = ?", row)

    def count(self) -> int:
        return self._connection().execute("SELECT count(*) FROM animals").fetchone()[0]

    def search(self, query: SearchQuery) -> SearchResult:
        where: list[str] = []
        parameters: dict[str, object] = {
            "seed": query.seed,
            "limit": query.limit,
            "offset": query.offset,
        }
        for name, value in query.filters().items():
            where.append(f"a.{_FILTER_COLUMNS[name]} = :{name}")
            parameters[name] = value
        words = [forms for phrase in query.phrases for forms in query_terms(phrase)]
        if words:
            source = "animals_fts f JOIN animals a ON a.rowid = f.rowid"
            where.append("animals_fts MATCH :match")
            parameters["match"] = " AND ".join(_fts_phrase(forms) for forms in words)
            score = "-bm25(animals_fts, 2.0, 1.0)"
        elif any(phrase.strip() for phrase in query.phrases):
            return SearchResult(hits=0, results=[])  # only particles or symbols: no terms
        else:
            source, score = "animals a", "0.0"
        condition = " AND ".join(where) or "1"
        connection = self._connection()
        try:
            hits = connection.execute(
                f"SELECT count(*) FROM {source} WHERE {condition}", parameters
            ).fetchone()[0]
            rows = connection.execute(
                f"SELECT a.document, {score} AS score FROM {source} WHERE {condition} "
                f"ORDER BY {_LOCAL_ORDER[query.sort_by]} LIMIT :limit OFFSET :offset",
                parameters,
            ).fetchall()
        except sqlite3.Error as error:  # a broken or locked index file
            raise SearchEngineError(f"search in {self.path}: {error}") from error
        results = [SearchHit(**json.loads(document), score=score) for document, score in rows]
        return SearchResult(hits=hits, results=results)


# --- services: Elasticsearch ---------------------------------------------------------------

_JAPANESE_FILTERS = [
    "kuromoji_baseform",
    "kuromoji_part_of_speech",
    "ja_stop",
    "kuromoji_number",
    "kuromoji_stemmer",
    "lowercase",
]
_JAPANESE_TEXT = {
    "type": "text",
    "analyzer": "ja_text",
    "fields": {"reading": {"type": "text", "analyzer": "ja_reading"}},
}
INDEX_BODY = {
    "settings": {
        "analysis": {
            # NFKC + case folding first: full-width, half-width kana and case all unify.
            "char_filter": {
                "nfkc_cf": {"type": "icu_normalizer", "name": "nfkc_cf", "mode": "compose"}
            },
            # Search mode also emits the parts of compounds (ショートヘア in the whole breed).
            "tokenizer": {"ja_search": {"type": "kuromoji_tokenizer", "mode": "search"}},
            "filter": {
                "katakana_reading": {"type": "kuromoji_readingform", "use_romaji": False},
                "hiragana_to_katakana": {"type": "icu_transform", "id": "Hiragana-Katakana"},
            },
            "analyzer": {
                "ja_text": {
                    "type": "custom",
                    "char_filter": ["nfkc_cf"],
                    "tokenizer": "ja_search",
                    "filter": _JAPANESE_FILTERS,
                },
                # Readings make ねこ, ネコ and 猫 one term (ネコ), as the local index does.
                "ja_reading": {
                    "type": "custom",
                    "char_filter": ["nfkc_cf"],
                    "tokenizer": "ja_search",
                    "filter": [*_JAPANESE_FILTERS, "katakana_reading", "hiragana_to_katakana"],
                },
            },
        }
    },
    "mappings": {
        "dynamic": "strict",
        "properties": {
            "id": {"type": "keyword"},
            "name": _JAPANESE_TEXT,
            "description": _JAPANESE_TEXT,
            "photo_key": {"type": "keyword", "index": False},
            "animal_category_id": {"type": "integer"},
            "animal_category_name_en": {"type": "keyword"},
            "animal_category_name_ja": {"type": "keyword"},
            "animal_subcategory_id": {"type": "integer"},
            "animal_subcategory_name_en": {"type": "keyword"},
            "animal_subcategory_name_ja": {"type": "keyword"},
            "user_id": {"type": "keyword"},
            "user_handle_name": {"type": "keyword"},
            "like": {"type": "integer"},
            "created_at": {"type": "date"},
        },
    },
}
_PHRASE_FIELDS = ["name^2", "name.reading^2", "description", "description.reading"]
_ES_SORT = {
    SortBy.score: ["_score", {"created_at": "desc"}, {"id": "asc"}],
    SortBy.like: [{"like": "desc"}, "_score", {"id": "asc"}],
    SortBy.learn_to_rank: [{"like": "desc"}, "_score", {"id": "asc"}],
    SortBy.created_at: [{"created_at": "desc"}, {"id": "asc"}],
    SortBy.random: ["_score", {"id": "asc"}],
}


def search_request(query: SearchQuery) -> dict:
    """The Elasticsearch request body of a query (kept public: tests check it exactly)."""
    boolean: dict = {
        "filter": [{"term": {name: value}} for name, value in query.filters().items()],
        "must": [
            {"multi_match": {"query": phrase, "fields": _PHRASE_FIELDS, "operator": "and"}}
            for phrase in query.phrases
            if phrase.strip()
        ],
    }
    es_query: dict = {"bool": boolean}
    if query.sort_by is SortBy.random:
        es_query = {
            "function_score": {
                "query": es_query,
                "random_score": {"seed": query.seed, "field": "_seq_no"},
                "boost_mode": "replace",
            }
        }
    return {
        "from": query.offset,
        "size": query.limit,
        "track_total_hits": True,
        "track_scores": True,  # scores are computed even when sorting by a field
        "query": es_query,
        "sort": _ES_SORT[query.sort_by],
    }


class ElasticsearchIndex:
    """The index of posts, through the official client (pooling, retries, typed errors)."""

    def __init__(self, client: Elasticsearch, index: str):
        self.client, self.index = client, index

    def create_index(self) -> None:
        """Create the index with its analysers and mapping, if it does not exist."""
        if self.client.indices.exists(index=self.index):
            return
        try:
            self.client.indices.create(index=self.index, body=INDEX_BODY)
        except BadRequestError as error:
            if error.error != "resource_already_exists_exception":  # another process won
                raise SearchEngineError(f"creating index {self.index}: {error}") from error

    def _bulk(self, actions: list[dict], **options) -> None:
        try:
            helpers.bulk(self.client, actions, refresh="wait_for", **options)
        except helpers.BulkIndexError as error:
            failed = error.errors
            raise SearchEngineError(f"{len(failed)} documents not indexed: {failed[:3]}") from error
        except (ApiError, TransportError) as error:
            raise SearchEngineError(f"bulk request to {self.index}: {error}") from error

    def upsert(self, documents: list[AnimalDocument]) -> None:
        actions = [
            {
                "_op_type": "index",
                "_index": self.index,
                "_id": d.id,
                "_source": d.model_dump(mode="json"),
            }
            for d in documents
        ]
        if actions:
            self._bulk(actions)

    def delete(self, ids: list[str]) -> None:
        actions = [{"_op_type": "delete", "_index": self.index, "_id": i} for i in ids]
        if actions:
            # Deleting a missing document is not an error: deletes are idempotent.
            self._bulk(actions, ignore_status=(404,))

    def count(self) -> int:
        return int(self.client.count(index=self.index)["count"])

    def search(self, query: SearchQuery) -> SearchResult:
        try:
            body = self.client.search(index=self.index, body=search_request(query))
        except (ApiError, TransportError) as error:  # an answered error, or none at all
            raise SearchEngineError(f"search in {self.index}: {error}") from error
        results = [
            SearchHit(**hit["_source"], score=hit["_score"] or 0.0) for hit in body["hits"]["hits"]
        ]
        return SearchResult(hits=body["hits"]["total"]["value"], results=results)


def elasticsearch_client(url: str) -> Elasticsearch:
    settings = elasticsearch_settings()
    auth = (settings.user, settings.password.get_secret_value()) if settings.user else None
    return Elasticsearch(
        url, basic_auth=auth, request_timeout=10, max_retries=2, retry_on_timeout=True
    )


@cache
def _index_for(engine: str, location: str) -> SearchIndex:
    if engine == "elasticsearch":
        # Not created here: the consumer creates it (`create_index`), in one place.
        return ElasticsearchIndex(elasticsearch_client(location), elasticsearch_settings().index)
    return LocalSearchIndex(Path(location))


def get_search_index() -> SearchIndex:
    """The search index of the configured profile, one per process."""
    platform = platform_settings()
    engine = search_settings().engine or (
        "elasticsearch" if platform.profile is Profile.services else "local"
    )
    if engine == "elasticsearch":
        return _index_for(engine, elasticsearch_settings().url)
    return _index_for(engine, str((platform.home / "search.sqlite").resolve()))
