"""Learning to rank search results: what training (`mlsys.search`) and serving (the API)
share, defined once: the model's registered name, the feature set and its version, the
position propensities, the grading of gains and the metrics.

Features describe a post as it was when the search happened (point in time) and the
search itself. They come from three places, all available at serving time: the search
hit (likes, age, category and breed), the post's activity in the access logs
(impressions, and how often an examined impression was selected, viewed long or liked;
"examined" weighs each impression by the propensity of its position) and its owner's
activity. Nothing the click model hides (a post's quality) is a feature.
"""

from collections.abc import Mapping

import numpy as np

RANKER_MODEL_NAME = "aianimals_search_ranker"
RANKER_EXPERIMENT = "aianimals_search_ranking"
FEATURE_SET_VERSION = 1
RERANK_CANDIDATES = 100  # the engine's most liked matches that learn_to_rank reorders
RESULTS_SHOWN = 20  # what one page of the app shows, the positions propensities cover
# Logged with each ranker: the features of results shown in its test searches, at most this
# many, which its drift check compares the results shown since with.
DRIFT_REFERENCE_ARTIFACT = "drift_reference.parquet"
DRIFT_REFERENCE_ROWS = 20_000

# Per-post activity from the access logs and the owner: the online features.
LOGGED_ACTIVITY = ("impressions", "examinations", "selects", "see_longs", "logged_likes")
ACTIVITY = (*LOGGED_ACTIVITY, "owner_posts")
FEATURES = (
    "log_likes",
    "likes_per_day",
    "age_days",
    "log_impressions",
    "log_examinations",
    "select_rate",
    "see_long_rate",
    "like_rate",
    "log_owner_posts",
    "animal_category_id",
    "animal_subcategory_id",
    "breed_in_query",
    "query_in_name",
    "phrases",
    "filtered",
)
CATEGORICAL = ("animal_category_id", "animal_subcategory_id")
# Smoothing of the rates: a post examined a few times is assumed average until it has been
# examined about this often.
PRIOR_EXAMINATIONS = 5.0
PRIOR_RATES = {"select_rate": 0.08, "see_long_rate": 0.04, "like_rate": 0.012}
# Graded relevance of a logged result: the strongest thing the user did with it.
ACTION_GRADE = {"impression": 0, "select": 1, "see_long": 2, "like": 3}


def feature_matrix(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """The model's input, one row per (search, post), from raw columns: `likes`,
    `age_days`, the ACTIVITY counts, the two category ids, `breed_in_query`,
    `query_in_name`, `phrases` and `filtered`."""
    likes = np.asarray(columns["likes"], dtype=float)
    age = np.maximum(np.asarray(columns["age_days"], dtype=float), 0.0)
    examinations = np.asarray(columns["examinations"], dtype=float)
    derived = {
        "log_likes": np.log1p(likes),
        "likes_per_day": likes / (age + 1.0),
        "age_days": age,
        "log_impressions": np.log1p(np.asarray(columns["impressions"], dtype=float)),
        "log_examinations": np.log1p(examinations),
        "log_owner_posts": np.log1p(np.asarray(columns["owner_posts"], dtype=float)),
    }
    for rate, count in (
        ("select_rate", "selects"),
        ("see_long_rate", "see_longs"),
        ("like_rate", "logged_likes"),
    ):
        prior = PRIOR_RATES[rate]
        derived[rate] = (np.asarray(columns[count], dtype=float) + prior * PRIOR_EXAMINATIONS) / (
            examinations + PRIOR_EXAMINATIONS
        )
    for name in (*CATEGORICAL, "breed_in_query", "query_in_name", "phrases", "filtered"):
        derived[name] = np.asarray(columns[name], dtype=float)
    return np.column_stack([derived[name] for name in FEATURES])


def query_features(
    phrases: list[tuple[str, ...]], breed_ja: list[str], names: list[str]
) -> dict[str, np.ndarray]:
    """The search-and-post features, one row per (phrases, post): whether a phrase names
    the post's breed, or appears in its name (string tests: cheap enough for 100
    candidates per search), and how many phrases were typed."""
    typed = [[p.strip() for p in row if p.strip()] for row in phrases]
    return {
        "breed_in_query": np.array(
            [any(p in b or b in p for p in row) for row, b in zip(typed, breed_ja, strict=True)]
        ),
        "query_in_name": np.array(
            [any(p in n for p in row) for row, n in zip(typed, names, strict=True)]
        ),
        "phrases": np.array([len(row) for row in typed]),
    }


def estimate_propensities(
    positions: np.ndarray, selected: np.ndarray, randomized: np.ndarray
) -> np.ndarray:
    """P(a result at position k is examined), relative to the first position, for
    k < RESULTS_SHOWN, from the logs: the select rate by position, over searches whose
    order barely depends on relevance where there are enough of them (`randomized`: the
    text-score order on short texts is close to a shuffle), else over all. Made
    non-increasing, so that a noisy deeper position is never more examined."""
    use = randomized if randomized.sum() >= 20 * RESULTS_SHOWN else np.ones_like(randomized)
    shown = np.bincount(positions[use], minlength=RESULTS_SHOWN)[:RESULTS_SHOWN]
    clicked = np.bincount(positions[use & selected], minlength=RESULTS_SHOWN)[:RESULTS_SHOWN]
    rate = (clicked + 1.0) / (shown + 10.0)
    return np.minimum.accumulate(np.clip(rate / rate[0], 0.02, 1.0))


def quality_gain(quality: np.ndarray) -> np.ndarray:
    """Gain of a post of hidden quality q (in [0, 1]) for NDCG: grade floor(5q) capped at
    4, gain 2^grade - 1 (so 0, 1, 3, 7, 15)."""
    grade = np.minimum(np.floor(np.asarray(quality) * 5), 4)
    return 2.0**grade - 1


def logged_gain(grade: np.ndarray) -> np.ndarray:
    """Gain of a logged result of grade g (ACTION_GRADE): 2^g - 1."""
    return 2.0 ** np.asarray(grade, dtype=float) - 1


def dcg(gains: np.ndarray, k: int = 10) -> float:
    top = np.asarray(gains, dtype=float)[:k]
    return float((top / np.log2(np.arange(2, len(top) + 2))).sum())


def ndcg(ranked_gains: np.ndarray, all_gains: np.ndarray, k: int = 10) -> float | None:
    """NDCG@k of gains in ranked order, against the ideal order of `all_gains` (which may
    hold posts the ranking never saw). None when nothing is relevant."""
    ideal = dcg(np.sort(np.asarray(all_gains, dtype=float))[::-1], k)
    return dcg(ranked_gains, k) / ideal if ideal > 0 else None


def reciprocal_rank(ranked_relevant: np.ndarray) -> float:
    """1 / rank of the first relevant result (0 when none is)."""
    hits = np.flatnonzero(ranked_relevant)
    return 1.0 / (hits[0] + 1) if len(hits) else 0.0
