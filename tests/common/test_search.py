"""Search behaviour on the local engine (SQLite FTS5), and the Elasticsearch adapter's
mappings and request bodies, checked exactly (no Elasticsearch server runs here)."""

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from mlsys.common.search import (
    INDEX_BODY,
    AnimalDocument,
    ElasticsearchIndex,
    LocalSearchIndex,
    SearchEngineError,
    SearchQuery,
    SortBy,
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


class FakeElasticsearch:
    """Records requests and answers like Elasticsearch 8 does."""

    def __init__(self):
        self.requests: list[httpx.Request] = []
        self.responses: dict[tuple[str, str], httpx.Response] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.get(
            (request.method, request.url.path), httpx.Response(200, json={"errors": False})
        )


@pytest.fixture
def fake_es():
    fake = FakeElasticsearch()
    client = httpx.Client(base_url="http://es:9200", transport=httpx.MockTransport(fake))
    return fake, ElasticsearchIndex(client, "animals")


def test_create_index_puts_the_mapping_once(fake_es):
    fake, index = fake_es
    fake.responses[("HEAD", "/animals")] = httpx.Response(404)
    index.create_index()
    assert [(r.method, r.url.path) for r in fake.requests] == [
        ("HEAD", "/animals"),
        ("PUT", "/animals"),
    ]
    assert json.loads(fake.requests[1].content) == INDEX_BODY
    fake.requests.clear()
    fake.responses[("HEAD", "/animals")] = httpx.Response(200)
    index.create_index()
    assert [r.method for r in fake.requests] == ["HEAD"]


def test_upsert_and_delete_are_bulk_ndjson(fake_es):
    fake, index = fake_es
    index.upsert(DOCUMENTS[:2])
    index.delete([DOCUMENTS[0].id])
    upsert, delete = fake.requests
    assert upsert.url.path == "/_bulk" and upsert.url.params["refresh"] == "wait_for"
    assert upsert.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in upsert.content.decode().splitlines()]
    assert lines[0] == {"index": {"_index": "animals", "_id": DOCUMENTS[0].id}}
    assert AnimalDocument(**lines[1]) == DOCUMENTS[0]
    assert lines[2] == {"index": {"_index": "animals", "_id": DOCUMENTS[1].id}}
    assert [json.loads(line) for line in delete.content.decode().splitlines()] == [
        {"delete": {"_index": "animals", "_id": DOCUMENTS[0].id}}
    ]


def test_search_sends_the_request_body_and_reads_hits(fake_es):
    fake, index = fake_es
    hit = {"_id": DOCUMENTS[0].id, "_score": 1.5, "_source": DOCUMENTS[0].model_dump(mode="json")}
    fake.responses[("POST", "/animals/_search")] = httpx.Response(
        200, json={"hits": {"total": {"value": 31, "relation": "eq"}, "hits": [hit]}}
    )
    query = SearchQuery(phrases=["ねこ"], limit=1)
    result = index.search(query)
    assert json.loads(fake.requests[0].content) == search_request(query)
    assert result.hits == 31
    assert result.results[0].id == DOCUMENTS[0].id and result.results[0].score == 1.5


def test_errors_and_rejected_documents_raise(fake_es):
    fake, index = fake_es
    fake.responses[("POST", "/animals/_search")] = httpx.Response(400, json={"error": "bad"})
    with pytest.raises(SearchEngineError, match="400"):
        index.search(SearchQuery())
    fake.responses[("POST", "/_bulk")] = httpx.Response(
        200, json={"errors": True, "items": [{"index": {"_id": "x", "error": {"type": "mapper"}}}]}
    )
    with pytest.raises(SearchEngineError, match="1 documents not indexed"):
        index.upsert(DOCUMENTS[:1])
