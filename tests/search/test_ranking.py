"""The pieces of learning to rank that must be exactly right: the metrics, the gains,
the propensities, the point-in-time history (no event at or after a search counts) and the
text-score baseline (the local engine's own order)."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from mlsys.aianimals.local_search import LocalSearchIndex
from mlsys.aianimals.ranking import (
    FEATURES,
    dcg,
    estimate_propensities,
    feature_matrix,
    logged_gain,
    ndcg,
    quality_gain,
    query_features,
    reciprocal_rank,
)
from mlsys.aianimals.ranking_data import History
from mlsys.aianimals.search import AnimalDocument, SearchQuery
from mlsys.search.evaluate import TextScores


def test_ndcg_against_the_ideal_of_every_candidate():
    assert dcg(np.array([3.0, 1.0])) == pytest.approx(3 / np.log2(2) + 1 / np.log2(3))
    assert ndcg(np.array([3.0, 1.0, 0.0]), np.array([0.0, 1.0, 3.0])) == pytest.approx(1.0)
    # The ideal includes a post the ranking never showed: the gap is counted.
    shown_only = ndcg(np.array([1.0, 0.0]), np.array([1.0, 0.0, 7.0]))
    assert shown_only == pytest.approx(1.0 / (7.0 + 1 / np.log2(3)))
    assert ndcg(np.zeros(3), np.zeros(3)) is None  # nothing relevant: not averaged in
    assert ndcg(np.ones(12), np.ones(12), k=10) == pytest.approx(1.0)


def test_reciprocal_rank_and_gains():
    assert reciprocal_rank(np.array([False, False, True])) == pytest.approx(1 / 3)
    assert reciprocal_rank(np.array([False, False])) == 0.0
    assert quality_gain(np.array([0.0, 0.19, 0.2, 0.45, 0.7, 0.99, 1.0])).tolist() == [
        0, 0, 1, 3, 7, 15, 15,
    ]  # fmt: skip
    assert logged_gain(np.array([0, 1, 2, 3])).tolist() == [0, 1, 3, 7]


def test_propensities_fall_with_position_and_start_at_one():
    rng = np.random.default_rng(0)
    positions = np.tile(np.arange(20), 2000)
    examined = rng.random(len(positions)) < 1 / (positions + 1) ** 0.8
    selected = examined & (rng.random(len(positions)) < 0.3)
    propensities = estimate_propensities(positions, selected, np.ones(len(positions), bool))
    assert propensities[0] == 1.0 and (np.diff(propensities) <= 0).all()
    truth = 1 / (np.arange(20) + 1) ** 0.8
    assert np.abs(propensities[:5] - truth[:5]).max() < 0.08  # recovered from the logs


def test_history_counts_only_what_happened_before():
    history = History(np.array([0, 0, 0, 1]), np.array([10, 20, 20, 5]), np.array([1, 2, 3, 4]))
    counts = history.before(np.array([0, 0, 0, 0, 1, 1, 2]), np.array([10, 11, 20, 21, 5, 6, 99]))
    assert counts.tolist() == [0, 1, 1, 6, 0, 4, 0]  # strictly before; other posts apart


def test_feature_rows_have_the_feature_set_and_smoothed_rates():
    columns = {
        "likes": [0, 10], "age_days": [0, 9], "impressions": [0, 100], "examinations": [0, 50],
        "selects": [0, 25], "see_longs": [0, 10], "logged_likes": [0, 5], "owner_posts": [1, 3],
        "animal_category_id": [1, 2], "animal_subcategory_id": [5, 6],
        **query_features([("柴犬",), ("柴犬",)], ["柴犬", "マンチカン"], ["ポチ", "柴犬のポチ"]),
        "filtered": [0, 1],
    }  # fmt: skip
    rows = feature_matrix(columns)
    assert rows.shape == (2, len(FEATURES))
    value = dict(zip(FEATURES, rows.T, strict=True))
    assert value["likes_per_day"].tolist() == [0.0, 1.0]
    assert value["select_rate"][1] > value["select_rate"][0]  # 25 of 50 examinations
    assert value["breed_in_query"].tolist() == [1.0, 0.0]
    assert value["query_in_name"].tolist() == [0.0, 1.0]


def test_the_text_score_baseline_is_the_local_engines_match_and_score(tmp_path):
    texts = [
        ("ミケ", "ふわふわの猫です"),
        ("ねこ太郎", "眠そうなねこ、ねこ、ねこ"),
        ("ポチ", "元気な犬と公園で"),
        ("タマ", "公園で昼寝する猫"),
        ("シロ", "柴犬のいぬ、ふわふわ"),
    ]
    documents = [
        AnimalDocument(
            id=f"{number:032x}",
            name=name,
            description=description,
            photo_key=f"p/{number}.png",
            animal_category_id=1,
            animal_category_name_en="cat",
            animal_category_name_ja="ネコ",
            animal_subcategory_id=1,
            animal_subcategory_name_en="persian",
            animal_subcategory_name_ja="ペルシャ",
            user_id="u" * 32,
            user_handle_name="dog_leigh",
            like=0,
            created_at=datetime(2021, 7, 1, tzinfo=UTC) + timedelta(days=number),
        )
        for number, (name, description) in enumerate(texts)
    ]
    engine = LocalSearchIndex(tmp_path / "search.sqlite")
    engine.upsert(documents)
    baseline = TextScores([n for n, _ in texts], [d for _, d in texts])
    for phrases in [("ねこ",), ("猫", "公園"), ("ふわふわ",), ("犬",), ("うさぎ",)]:
        served = engine.search(SearchQuery(phrases=list(phrases)))
        matched, score = baseline.search(phrases)
        assert {int(hit.id, 16): hit.score for hit in served.results} == pytest.approx(
            {post: score[post] for post in np.flatnonzero(matched)}
        ), phrases
    matched, score = baseline.search(("ねこ",))
    assert np.flatnonzero(matched).tolist() == [0, 1, 3]  # every spelling of the word
    assert score.argmax() == 1  # in the name, which weighs twice, and said most
