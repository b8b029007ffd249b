"""Search over animal posts: one interface, two engines.

- `LocalSearchIndex` (`mlsys.aianimals.local_search`): posts in a SQLite file under
  MLSYS_HOME, searched in memory with BM25 over terms made by `mlsys.aianimals.japanese`
  (the local profile).
- `ElasticsearchIndex`: Elasticsearch with a kuromoji + ICU analyser (services profile),
  through the official `elasticsearch` client.

Both hold whole documents, so a search needs no database query. Phrases are ANDed (every
phrase must match the name or the description); filters are exact names. A query may carry
similar words (`mlsys.aianimals.similar_words`): a phrase then also matches a post that
says one of its words another way, which scores less than the word typed.
"""

from datetime import datetime
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Protocol

from elasticsearch import ApiError, BadRequestError, Elasticsearch, TransportError, helpers
from pydantic import BaseModel, Field, model_validator

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


class SimilarWord(BaseModel):
    """A word of a query phrase said another way: a learned similar word, weighing less than
    the word typed. `word` and `similar` are keys of `japanese.phrase_words` (terms of the
    local index); `text` is the phrase with the similar word in the word's place (what
    Elasticsearch analyses)."""

    phrase: str
    word: str
    similar: str
    text: str
    weight: float = Field(gt=0, lt=1)


class SearchQuery(BaseModel):
    animal_category_name_en: str | None = None
    animal_category_name_ja: str | None = None
    animal_subcategory_name_en: str | None = None
    animal_subcategory_name_ja: str | None = None
    phrases: list[str] = Field(default_factory=list)
    similar_words: list[SimilarWord] = Field(default_factory=list)
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


def _phrase_clause(phrase: str, similar_words: list[SimilarWord]) -> dict:
    """Every word of the phrase must match; with similar words, the phrase said another way
    matches too, its score boosted by the similar word's weight (below 1)."""
    typed = {"multi_match": {"query": phrase, "fields": _PHRASE_FIELDS, "operator": "and"}}
    others = [
        {
            "multi_match": {
                "query": s.text,
                "fields": _PHRASE_FIELDS,
                "operator": "and",
                "boost": s.weight,
            }
        }
        for s in similar_words
        if s.phrase == phrase
    ]
    if not others:
        return typed
    return {"bool": {"should": [typed, *others], "minimum_should_match": 1}}


def search_request(query: SearchQuery) -> dict:
    """The Elasticsearch request body of a query (kept public: tests check it exactly)."""
    boolean: dict = {
        "filter": [{"term": {name: value}} for name, value in query.filters().items()],
        "must": [
            _phrase_clause(phrase, query.similar_words)
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
    from mlsys.aianimals.local_search import LocalSearchIndex  # it builds on this module

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
