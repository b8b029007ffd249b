"""Similar words applied to a query: a post that says a word only another way is found,
below the posts that say it as typed, in the local engine and in the Elasticsearch body."""

import pytest

from mlsys.aianimals.local_search import LocalSearchIndex
from mlsys.aianimals.search import SearchQuery, SimilarWord, search_request
from mlsys.aianimals.similar_words import EXPANSION_WEIGHT, SimilarWords
from tests.aianimals.test_search import document, ids

WORDS = SimilarWords({"ポメラニアン": [("ポメ", 0.4)], "ネコ": [("ニャンコ", 0.5)]})


@pytest.fixture
def index(tmp_path) -> LocalSearchIndex:
    index = LocalSearchIndex(tmp_path / "search.sqlite")
    index.upsert(
        [
            document(1, 3, "かわいいポメラニアンの犬です"),
            document(2, 3, "かわいいポメの犬です"),  # only the similar word
            document(3, 3, "かわいいチワワの犬です"),
            document(4, 3, "元気なポメラニアンの犬です"),
            document(5, 1, "眠そうなにゃんこです"),
            document(6, 1, "眠そうなねこです"),
            document(7, 1, "ふわふわの猫と公園で"),
        ]
    )
    return index


def search(index, phrases, words=None):
    similar = words.expand(phrases) if words else []
    return index.search(SearchQuery(phrases=phrases, similar_words=similar))


def test_expansion_replaces_the_word_as_written_and_weighs_less():
    [similar] = WORDS.expand(["ねこ"])  # ねこ, ネコ and 猫 share the key ネコ
    assert similar == SimilarWord(
        phrase="ねこ", word="ネコ", similar="ニャンコ", text="ニャンコ", weight=0.25
    )
    [similar] = WORDS.expand(["かわいいポメラニアン"])
    assert similar.text == "かわいいポメ" and similar.weight == pytest.approx(
        0.4 * EXPANSION_WEIGHT
    )
    assert WORDS.expand(["チワワ", "公園"]) == []
    assert SimilarWords.from_json(WORDS.to_json()) == WORDS


def test_a_post_saying_only_a_similar_word_is_found_below_the_typed_word(index):
    assert ids(search(index, ["ポメラニアン"])) == [4, 1]
    expanded = search(index, ["ポメラニアン"], WORDS)
    assert ids(expanded) == [4, 1, 2]
    scores = [hit.score for hit in expanded.results]
    assert scores[2] < min(scores[:2])
    # Typed as the similar word, the same posts the other way round: no table entry, no
    # expansion; the word's own posts only.
    assert ids(search(index, ["ポメ"], WORDS)) == [2]


def test_a_rare_similar_word_still_scores_below_a_common_typed_word(tmp_path):
    """ポメラニアン in most posts weighs almost nothing (IDF), ポメ in one would weigh much
    more: a similar word's IDF is capped at the typed word's."""
    index = LocalSearchIndex(tmp_path / "search.sqlite")
    others = [document(5, 3, "ポメです"), document(6, 1, "猫"), document(7, 1, "猫")]
    index.upsert([document(n, 3, "ポメラニアンです") for n in (1, 2, 3, 4)] + others)
    expanded = search(index, ["ポメラニアン"], SimilarWords({"ポメラニアン": [("ポメ", 1.0)]}))
    assert ids(expanded) == [4, 3, 2, 1, 5]
    assert expanded.results[-1].score < expanded.results[0].score


def test_every_phrase_must_still_match(index):
    assert ids(search(index, ["ポメラニアン", "元気"], WORDS)) == [4]  # 2 is not 元気
    assert search(index, ["ポメラニアン", "公園"], WORDS).hits == 0


def test_the_elasticsearch_body_ors_the_phrase_said_another_way_with_its_weight():
    query = SearchQuery(phrases=["かわいいポメラニアン", "犬"],
                        similar_words=WORDS.expand(["かわいいポメラニアン", "犬"]))  # fmt: skip
    fields = ["name^2", "name.reading^2", "description", "description.reading"]
    assert search_request(query)["query"]["bool"]["must"] == [
        {
            "bool": {
                "should": [
                    {"multi_match": {"query": "かわいいポメラニアン", "fields": fields,
                                     "operator": "and"}},
                    {"multi_match": {"query": "かわいいポメ", "fields": fields,
                                     "operator": "and", "boost": 0.2}},
                ],
                "minimum_should_match": 1,
            }
        },
        {"multi_match": {"query": "犬", "fields": fields, "operator": "and"}},
    ]  # fmt: skip
    # Without similar words the body is what it always was.
    plain = search_request(SearchQuery(phrases=["犬"]))["query"]["bool"]["must"]
    assert plain == [{"multi_match": {"query": "犬", "fields": fields, "operator": "and"}}]


@pytest.mark.parametrize("weight", [0.0, 1.0, 1.5])
def test_a_similar_word_weighs_less_than_the_word_typed(weight):
    with pytest.raises(ValueError, match="weight"):
        SimilarWord(phrase="a", word="a", similar="b", text="b", weight=weight)
