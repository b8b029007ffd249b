"""Search behaviour on the local engine (a SQLite file, searched in memory), and the
Elasticsearch adapter's mappings and request bodies, checked exactly as the official client
sends them to a local HTTP endpoint (no Elasticsearch server runs here)."""

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import pytest

from mlsys.aianimals.japanese import index_terms, query_terms
from mlsys.aianimals.local_search import LocalSearchIndex
from mlsys.aianimals.search import (
    INDEX_BODY,
    RESULT_WINDOW,
    AnimalDocument,
    ElasticsearchIndex,
    SearchEngineError,
    SearchQuery,
    SortBy,
    elasticsearch_client,
    search_request,
)

BREEDS = {
    1: ("cat", "ネコ", "persian", "ペルシャ"),
    2: ("cat", "ネコ", "bengal", "ベンガル"),
    3: ("dog", "イヌ", "shiba_inu", "シバイヌ"),
}
START = datetime(2021, 7, 1, tzinfo=UTC)


def document(number: int, breed: int, description: str, like: int = 0) -> AnimalDocument:
    category_en, category_ja, breed_en, breed_ja = BREEDS[breed]
    return AnimalDocument(
        id=f"{number:032x}",
        name=f"ペット{number}",
        description=description,
        photo_key=f"p/{number}.png",
        animal_category_id=1 if category_en == "cat" else 2,
        animal_category_name_en=category_en,
        animal_category_name_ja=category_ja,
        animal_subcategory_id=breed,
        animal_subcategory_name_en=breed_en,
        animal_subcategory_name_ja=breed_ja,
        user_id="u" * 32,
        user_handle_name="dog_leigh",
        like=like,
        created_at=START + timedelta(days=number),
    )


DOCUMENTS = [
    document(1, 1, "ふわふわの猫です", like=5),
    document(2, 1, "眠そうなねこです", like=1),
    document(3, 2, "元気なネコと公園で", like=9),
    document(4, 3, "散歩が大好きな犬です", like=3),
    document(5, 3, "柴犬のいぬ、ふわふわ", like=0),
    document(6, 2, "ﾈｺがお昼寝中", like=2),
]


@pytest.fixture
def index(tmp_path) -> LocalSearchIndex:
    index = LocalSearchIndex(tmp_path / "search.sqlite")
    index.upsert(DOCUMENTS)
    return index


def ids(result) -> list[int]:
    return [int(hit.id, 16) for hit in result.results]


@pytest.mark.parametrize("spelling", ["ねこ", "ネコ", "猫", "ﾈｺ"])
def test_every_spelling_finds_the_same_cats(index, spelling):
    result = index.search(SearchQuery(phrases=[spelling]))
    assert result.hits == 4
    assert sorted(ids(result)) == [1, 2, 3, 6]


def test_phrases_are_anded(index):
    assert sorted(ids(index.search(SearchQuery(phrases=["ふわふわ"])))) == [1, 5]
    assert ids(index.search(SearchQuery(phrases=["ふわふわ", "ねこ"]))) == [1]
    assert index.search(SearchQuery(phrases=["ふわふわ 公園"])).hits == 0


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("animal_category_name_en", "dog", [4, 5]),
        ("animal_category_name_ja", "ネコ", [1, 2, 3, 6]),
        ("animal_subcategory_name_en", "bengal", [3, 6]),
        ("animal_subcategory_name_ja", "ペルシャ", [1, 2]),
        ("animal_subcategory_name_en", "no_such_breed", []),
    ],
)
def test_each_filter(index, field, value, expected):
    result = index.search(SearchQuery(**{field: value}))
    assert sorted(ids(result)) == expected
    assert result.hits == len(expected)


def test_filters_combine_with_phrases(index):
    query = SearchQuery(phrases=["ねこ"], animal_subcategory_name_en="persian")
    assert sorted(ids(index.search(query))) == [1, 2]


def test_sort_by_like_and_created_at(index):
    assert ids(index.search(SearchQuery(sort_by=SortBy.like))) == [3, 1, 4, 6, 2, 5]
    assert ids(index.search(SearchQuery(sort_by=SortBy.created_at))) == [6, 5, 4, 3, 2, 1]


def test_sort_by_score_ranks_the_name_above_the_description(tmp_path):
    index = LocalSearchIndex(tmp_path / "s.sqlite")
    in_name = document(1, 1, "ごはんを待っています").model_copy(update={"name": "猫のタマ"})
    index.upsert([document(2, 1, "猫が好きです、ごはんを待っています"), in_name])
    result = index.search(SearchQuery(phrases=["猫"], sort_by=SortBy.score))
    assert ids(result) == [1, 2]
    assert result.results[0].score > result.results[1].score > 0


def test_random_order_is_a_seeded_shuffle(index):
    first = ids(index.search(SearchQuery(sort_by=SortBy.random, seed=1)))
    assert first == ids(index.search(SearchQuery(sort_by=SortBy.random, seed=1)))
    assert sorted(first) == [1, 2, 3, 4, 5, 6]
    others = {
        tuple(ids(index.search(SearchQuery(sort_by=SortBy.random, seed=s)))) for s in range(8)
    }
    assert len(others) > 1


@pytest.mark.parametrize("sort_by", list(SortBy))
def test_pages_partition_the_results(index, sort_by):
    everything = ids(index.search(SearchQuery(sort_by=sort_by, seed=3, limit=100)))
    pages = [
        ids(index.search(SearchQuery(sort_by=sort_by, seed=3, limit=4, offset=offset)))
        for offset in (0, 4, 8)
    ]
    assert pages[0] + pages[1] + pages[2] == everything
    assert [len(p) for p in pages] == [4, 2, 0]
    assert index.search(SearchQuery(sort_by=sort_by, limit=4, offset=4)).hits == 6


def test_upsert_replaces_and_delete_removes(index):
    index.upsert([DOCUMENTS[1].model_copy(update={"like": 50, "description": "柴犬です"})])
    assert ids(index.search(SearchQuery(sort_by=SortBy.like, limit=1))) == [2]
    assert 2 not in ids(index.search(SearchQuery(phrases=["ねこ"])))
    assert 2 in ids(index.search(SearchQuery(phrases=["シバイヌ"])))
    index.delete([DOCUMENTS[1].id, "f" * 32])  # deleting what is not there is fine
    assert index.count() == 5
    assert 2 not in ids(index.search(SearchQuery()))


def test_a_query_of_only_particles_finds_nothing(index):
    assert index.search(SearchQuery(phrases=["の"])).hits == 0


def test_scores_are_fts5_bm25_with_the_name_weighing_twice(index):
    """The in-memory scores are SQLite FTS5's bm25 over the same terms, to rounding."""
    index.upsert([document(7, 1, "猫と犬と猫の写真").model_copy(update={"name": "猫のミケ"})])
    reference = sqlite3.connect(":memory:")
    reference.execute("CREATE VIRTUAL TABLE f USING fts5(id UNINDEXED, name, description)")
    with sqlite3.connect(index.path) as stored:
        reference.executemany(
            "INSERT INTO f VALUES (?, ?, ?)",
            stored.execute("SELECT id, name_terms, description_terms FROM animals"),
        )
    # Common words (IDF clamped to a millionth, as FTS5 does) and rare ones.
    for phrases in (["ねこ"], ["猫", "ふわふわ"], ["いぬ"], ["公園"], ["写真"], ["ミケ", "犬"]):
        match = " AND ".join(
            "(" + " OR ".join(f'"{form}"' for form in forms) + ")"
            for phrase in phrases
            for forms in query_terms(phrase)
        )
        expected = dict(
            reference.execute("SELECT id, -bm25(f, 0.0, 2.0, 1.0) FROM f WHERE f MATCH ?", (match,))
        )
        result = index.search(SearchQuery(phrases=phrases))
        assert expected
        assert {hit.id: hit.score for hit in result.results} == pytest.approx(expected, rel=1e-9)


def test_a_reader_sees_what_another_process_wrote_and_deleted(tmp_path):
    """The consumer writes the file, each API process searches its own memory of it."""
    writer = LocalSearchIndex(tmp_path / "search.sqlite")
    reader = LocalSearchIndex(tmp_path / "search.sqlite")
    writer.upsert(DOCUMENTS)
    assert reader.search(SearchQuery(phrases=["ねこ"])).hits == 4
    writer.upsert([DOCUMENTS[0].model_copy(update={"like": 99})])
    writer.delete([DOCUMENTS[2].id])
    liked = reader.search(SearchQuery(phrases=["ねこ"], sort_by=SortBy.like))
    assert ids(liked) == [1, 6, 2] and liked.results[0].like == 99
    writer.upsert([DOCUMENTS[2]])  # back after a deletion
    assert ids(reader.search(SearchQuery(phrases=["ねこ"], sort_by=SortBy.like))) == [1, 3, 6, 2]


def test_rewrites_of_the_same_posts_leave_searches_unchanged(index):
    """Every like rewrites a post (a new slot in memory): enough of them rebuild it."""
    before = {sort: ids(index.search(SearchQuery(sort_by=sort, seed=2))) for sort in SortBy}
    for _ in range(400):
        index.upsert(DOCUMENTS)
    assert index._memory.terms.size < 1100  # rebuilt, not 2,400 slots
    assert {sort: ids(index.search(SearchQuery(sort_by=sort, seed=2))) for sort in SortBy} == (
        before
    )


def test_a_file_of_the_fts5_layout_is_upgraded_in_place(tmp_path):
    path = tmp_path / "search.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript(
            "CREATE TABLE animals (rowid INTEGER PRIMARY KEY, id TEXT UNIQUE NOT NULL, "
            "document TEXT NOT NULL, category_en TEXT, category_ja TEXT, subcategory_en TEXT, "
            "subcategory_ja TEXT, likes INTEGER NOT NULL, created_at TEXT NOT NULL);"
            "CREATE VIRTUAL TABLE animals_fts USING fts5(name, description);"
        )
        for rowid, doc in enumerate(DOCUMENTS, start=1):
            old.execute(
                "INSERT INTO animals VALUES (?, ?, ?, '', '', '', '', 0, '')",
                (rowid, doc.id, doc.model_dump_json()),
            )
            old.execute(
                "INSERT INTO animals_fts (rowid, name, description) VALUES (?, ?, ?)",
                (rowid, " ".join(index_terms(doc.name)), " ".join(index_terms(doc.description))),
            )
    upgraded = LocalSearchIndex(path)
    assert upgraded.count() == 6
    assert sorted(ids(upgraded.search(SearchQuery(phrases=["ねこ"])))) == [1, 2, 3, 6]


# --- Elasticsearch adapter ---------------------------------------------------------------


def test_index_uses_kuromoji_and_icu_for_japanese_fields():
    analysis = INDEX_BODY["settings"]["analysis"]
    assert analysis["tokenizer"]["ja_search"] == {"type": "kuromoji_tokenizer", "mode": "search"}
    assert analysis["char_filter"]["nfkc_cf"]["type"] == "icu_normalizer"
    reading = analysis["analyzer"]["ja_reading"]
    assert reading["filter"][-2:] == ["katakana_reading", "hiragana_to_katakana"]
    assert analysis["filter"]["hiragana_to_katakana"] == {
        "type": "icu_transform",
        "id": "Hiragana-Katakana",
    }
    properties = INDEX_BODY["mappings"]["properties"]
    assert INDEX_BODY["mappings"]["dynamic"] == "strict"
    for field in ("name", "description"):
        assert properties[field]["analyzer"] == "ja_text"
        assert properties[field]["fields"]["reading"]["analyzer"] == "ja_reading"
    # Every document field is mapped, and nothing else.
    assert set(properties) == set(AnimalDocument.model_fields)
    assert properties["like"] == {"type": "integer"}
    assert properties["animal_category_name_en"] == {"type": "keyword"}


def test_search_request_with_every_filter_sorted_by_like():
    query = SearchQuery(
        animal_category_name_en="cat",
        animal_category_name_ja="ネコ",
        animal_subcategory_name_en="persian",
        animal_subcategory_name_ja="ペルシャ",
        phrases=["ねこ", " ", "ふわふわ"],
        sort_by=SortBy.like,
        limit=20,
        offset=40,
    )
    fields = ["name^2", "name.reading^2", "description", "description.reading"]
    assert search_request(query) == {
        "from": 40,
        "size": 20,
        "track_total_hits": True,
        "track_scores": True,
        "query": {
            "bool": {
                "filter": [
                    {"term": {"animal_category_name_en": "cat"}},
                    {"term": {"animal_category_name_ja": "ネコ"}},
                    {"term": {"animal_subcategory_name_en": "persian"}},
                    {"term": {"animal_subcategory_name_ja": "ペルシャ"}},
                ],
                "must": [
                    {"multi_match": {"query": "ねこ", "fields": fields, "operator": "and"}},
                    {"multi_match": {"query": "ふわふわ", "fields": fields, "operator": "and"}},
                ],
            }
        },
        "sort": [{"like": "desc"}, "_score", {"id": "asc"}],
    }


@pytest.mark.parametrize(
    ("sort_by", "sort"),
    [
        (SortBy.score, ["_score", {"created_at": "desc"}, {"id": "asc"}]),
        (SortBy.created_at, [{"created_at": "desc"}, {"id": "asc"}]),
        (SortBy.random, ["_score", {"id": "asc"}]),
    ],
)
def test_search_request_sorts(sort_by, sort):
    body = search_request(SearchQuery(sort_by=sort_by, seed=11))
    assert body["sort"] == sort
    if sort_by is SortBy.random:
        assert body["query"] == {
            "function_score": {
                "query": {"bool": {"filter": [], "must": []}},
                "random_score": {"seed": 11, "field": "_seq_no"},
                "boost_mode": "replace",
            }
        }


@dataclass
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes


class FakeElasticsearch(ThreadingHTTPServer):
    """A local HTTP endpoint that records what the official client sends and answers as
    Elasticsearch 8 does: canned answers per (method, path), bulk items per action."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _FakeHandler)
        self.requests: list[Recorded] = []
        self.responses: dict[tuple[str, str], tuple[int, dict | None]] = {}
        self.url = f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, request: Recorded) -> tuple[int, dict | None]:
        if (request.method, request.path) in self.responses:
            return self.responses[(request.method, request.path)]
        if request.path == "/_bulk":
            actions = [json.loads(line) for line in request.body.splitlines()]
            items = [
                {op: {"_index": meta["_index"], "_id": meta["_id"], "status": 200}}
                for action in actions
                for op, meta in action.items()
                if op in {"index", "delete"}
            ]
            return 200, {"took": 1, "errors": False, "items": items}
        return 200, {}


class _FakeHandler(BaseHTTPRequestHandler):
    server: FakeElasticsearch

    def log_message(self, *_):  # quiet
        pass

    def _handle(self):
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = Recorded(self.command, url.path, dict(parse_qsl(url.query)), headers, body)
        self.server.requests.append(request)
        status, answer = self.server.answer(request)
        payload = b"" if answer is None or self.command == "HEAD" else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("X-Elastic-Product", "Elasticsearch")  # the client checks it
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle


@pytest.fixture
def fake_es():
    fake = FakeElasticsearch()
    thread = threading.Thread(target=fake.serve_forever, daemon=True)
    thread.start()
    client = elasticsearch_client(fake.url)
    yield fake, ElasticsearchIndex(client, "animals")
    client.close()
    fake.shutdown()
    fake.server_close()


def test_create_index_puts_the_mapping_once(fake_es):
    fake, index = fake_es
    fake.responses[("HEAD", "/animals")] = (404, None)
    index.create_index()
    assert [(r.method, r.path) for r in fake.requests] == [
        ("HEAD", "/animals"),
        ("PUT", "/animals"),
    ]
    assert json.loads(fake.requests[1].body) == INDEX_BODY
    fake.requests.clear()
    fake.responses[("HEAD", "/animals")] = (200, None)
    index.create_index()
    assert [r.method for r in fake.requests] == ["HEAD"]


def test_upsert_and_delete_are_bulk_ndjson(fake_es):
    fake, index = fake_es
    index.upsert(DOCUMENTS[:2])
    index.delete([DOCUMENTS[0].id])
    upsert, delete = fake.requests
    assert upsert.path == "/_bulk" and upsert.params["refresh"] == "wait_for"
    assert "x-ndjson" in upsert.headers["content-type"]
    lines = [json.loads(line) for line in upsert.body.decode().splitlines()]
    assert lines[0] == {"index": {"_index": "animals", "_id": DOCUMENTS[0].id}}
    assert AnimalDocument(**lines[1]) == DOCUMENTS[0]
    assert lines[2] == {"index": {"_index": "animals", "_id": DOCUMENTS[1].id}}
    assert [json.loads(line) for line in delete.body.decode().splitlines()] == [
        {"delete": {"_index": "animals", "_id": DOCUMENTS[0].id}}
    ]


def test_deleting_a_missing_document_is_not_an_error(fake_es):
    fake, index = fake_es
    item = {"delete": {"_index": "animals", "_id": "x", "status": 404, "result": "not_found"}}
    fake.responses[("PUT", "/_bulk")] = (200, {"took": 1, "errors": False, "items": [item]})
    index.delete(["x"])


def test_search_sends_the_request_body_and_reads_hits(fake_es):
    fake, index = fake_es
    hit = {"_id": DOCUMENTS[0].id, "_score": 1.5, "_source": DOCUMENTS[0].model_dump(mode="json")}
    fake.responses[("POST", "/animals/_search")] = (
        200,
        {"hits": {"total": {"value": 31, "relation": "eq"}, "hits": [hit]}},
    )
    query = SearchQuery(phrases=["ねこ"], limit=1)
    result = index.search(query)
    assert json.loads(fake.requests[0].body) == search_request(query)
    assert result.hits == 31
    assert result.results[0].id == DOCUMENTS[0].id and result.results[0].score == 1.5


def test_errors_and_rejected_documents_raise(fake_es):
    fake, index = fake_es
    error = {"error": {"type": "parsing_exception", "reason": "bad"}, "status": 400}
    fake.responses[("POST", "/animals/_search")] = (400, error)
    with pytest.raises(SearchEngineError, match="parsing_exception"):
        index.search(SearchQuery())
    item = {"index": {"_index": "animals", "_id": "x", "status": 400, "error": {"type": "mapper"}}}
    fake.responses[("PUT", "/_bulk")] = (200, {"took": 1, "errors": True, "items": [item]})
    with pytest.raises(SearchEngineError, match="1 documents not indexed"):
        index.upsert(DOCUMENTS[:1])


def test_an_unreachable_engine_is_a_search_engine_error():
    from tests.helpers.services import free_port

    client = elasticsearch_client(f"http://127.0.0.1:{free_port()}")
    index = ElasticsearchIndex(client, "animals")
    with pytest.raises(SearchEngineError, match="search in animals"):
        index.search(SearchQuery())
    with pytest.raises(SearchEngineError, match="bulk request"):
        index.upsert(DOCUMENTS[:1])
    client.close()


def test_no_query_reaches_past_the_result_window():
    SearchQuery(offset=RESULT_WINDOW - 100, limit=100)
    with pytest.raises(ValueError, match="offset \\+ limit must be at most 10000"):
        SearchQuery(offset=RESULT_WINDOW - 99, limit=100)


def test_opening_the_index_creates_nothing_its_one_writer_does(fake_es, monkeypatch):
    """Issue 11, item 8: every API replica raced to create the index at start."""
    from mlsys.aianimals.search import _index_for, get_search_index

    fake, _ = fake_es
    monkeypatch.setenv("SEARCH_ENGINE", "elasticsearch")
    monkeypatch.setenv("ELASTICSEARCH_URL", fake.url)
    _index_for.cache_clear()
    index = get_search_index()  # what the API does at start
    assert fake.requests == []
    fake.responses[("HEAD", "/animals")] = (404, None)
    index.create_index()  # what the search-index consumer does before consuming
    assert [(r.method, r.path) for r in fake.requests] == [
        ("HEAD", "/animals"),
        ("PUT", "/animals"),
    ]
    _index_for.cache_clear()
