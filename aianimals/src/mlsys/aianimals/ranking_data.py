"""The ranking data: posts, likes and access logs read from the AIAnimals database, the
logged searches split by time, and every (search, post) pair's features as they were when
the search happened (point in time: only events strictly before it count). The ranker's
training (`mlsys.search`) and its drift check (`mlsys.monitoring`) read it."""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from mlsys.aianimals.ranking import (
    ACTION_GRADE,
    FEATURES,
    RESULTS_SHOWN,
    estimate_propensities,
    feature_matrix,
    query_features,
)
from mlsys.aianimals.tables import AccessLog, Animal, AnimalSubcategory, Like

SPLITS = ("train", "validation", "test")
_SCALE = np.int64(2**33)  # key = post * _SCALE + unix seconds (seconds < 2^33 until 2242)


class NotEnoughData(ValueError):
    """Too few logged searches to train and evaluate a ranker."""


def _seconds(values) -> np.ndarray:
    return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("s").asi8.astype(np.int64)


class History:
    """Per post, the (weighted) count of its events strictly before a time."""

    def __init__(self, post: np.ndarray, time: np.ndarray, weight: np.ndarray | None = None):
        keys = np.asarray(post, dtype=np.int64) * _SCALE + np.asarray(time, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        weights = np.ones(len(keys)) if weight is None else np.asarray(weight, dtype=float)
        self.cumulative = np.concatenate([[0.0], np.cumsum(weights[order])])

    def before(self, post: np.ndarray, time: np.ndarray) -> np.ndarray:
        post = np.asarray(post, dtype=np.int64)
        end = np.searchsorted(self.keys, post * _SCALE + np.asarray(time, dtype=np.int64))
        start = np.searchsorted(self.keys, post * _SCALE)
        return self.cumulative[end] - self.cumulative[start]


@dataclass
class RankingData:
    posts: pd.DataFrame  # position = the post's index in every array below
    searches: pd.DataFrame  # one row per logged search, by time, with its split
    impressions: pd.DataFrame  # (search, post, position, grade) of every result shown
    propensities: np.ndarray
    histories: dict[str, History]
    fingerprint: str

    def activity(self, post: np.ndarray, time: np.ndarray) -> dict[str, np.ndarray]:
        """The online features of posts as they were at `time`."""
        owner = self.posts["owner"].to_numpy()[post]
        counts = {
            name: h.before(post, time)
            for name, h in self.histories.items()
            if name != "owner_posts"
        }
        counts["owner_posts"] = self.histories["owner_posts"].before(owner, time)
        return counts

    def shown_features(self, searches: np.ndarray) -> pd.DataFrame:
        """The features of every result shown in `searches` (a mask over `self.searches`),
        one column per feature: what the ranker saw of them."""
        rows = self.impressions[searches[self.impressions["search"].to_numpy()]]
        matrix = self.features(rows["search"].to_numpy(), rows["post"].to_numpy())
        return pd.DataFrame(matrix, columns=list(FEATURES))

    def features(self, search: np.ndarray, post: np.ndarray) -> np.ndarray:
        """The model's input for (search, post) pairs, as of each search's time."""
        searches = self.searches
        time = searches["time"].to_numpy()[search]
        posts = self.posts
        columns = self.activity(post, time)
        columns["age_days"] = (time - posts["created"].to_numpy()[post]) / 86400
        columns["animal_category_id"] = posts["animal_category_id"].to_numpy()[post]
        columns["animal_subcategory_id"] = posts["animal_subcategory_id"].to_numpy()[post]
        typed = searches["phrases"].to_numpy()[search]
        breeds = posts["breed_ja"].to_numpy()[post]
        names = posts["name"].to_numpy()[post]
        columns.update(query_features(list(typed), list(breeds), list(names)))
        columns["filtered"] = searches["filtered"].to_numpy()[search].astype(float)
        return feature_matrix(columns)


def read_ranking_data(
    engine: Engine,
    validation_share: float = 0.1,
    test_share: float = 0.2,
    min_searches: int = 50,
    until: datetime | None = None,
) -> RankingData:
    """Everything training and evaluation need, from the database: the searches logged
    before `until` (default: all), see `ranking_data`."""
    logged = select(AccessLog)
    if until is not None:
        logged = logged.where(AccessLog.created_at < until)
    with engine.connect() as connection:
        posts = pd.read_sql(
            select(
                Animal.id,
                Animal.animal_category_id,
                Animal.animal_subcategory_id,
                Animal.user_id,
                Animal.name,
                Animal.description,
                Animal.created_at,
                Animal.deactivated,
                AnimalSubcategory.name_ja.label("breed_ja"),
            ).join(AnimalSubcategory, AnimalSubcategory.id == Animal.animal_subcategory_id),
            connection,
        )
        likes = pd.read_sql(select(Like.animal_id, Like.created_at), connection)
        logs = pd.read_sql(logged, connection)
    return ranking_data(posts, likes, logs, validation_share, test_share, min_searches)


def ranking_data(
    posts: pd.DataFrame,
    likes: pd.DataFrame,
    logs: pd.DataFrame,
    validation_share: float = 0.1,
    test_share: float = 0.2,
    min_searches: int = 50,
) -> RankingData:
    """The ranking data of posts (the `animals` columns with their breed's Japanese name,
    `breed_ja`), likes (`animal_id`, `created_at`) and access logs (the table's columns).
    Searches are split by time: the earliest train, the next validate (early stopping), the
    latest test (used once, for the reported figures); a search's results never straddle
    two splits."""
    if logs["search_id"].nunique() < min_searches:
        raise NotEnoughData(
            f"{logs['search_id'].nunique()} logged searches: at least {min_searches} needed"
        )
    posts = posts.sort_values("id", ignore_index=True)
    index = pd.Series(np.arange(len(posts)), index=posts["id"])
    posts["created"] = _seconds(posts["created_at"])
    posts["owner"] = pd.factorize(posts["user_id"])[0]
    logs = logs[logs["animal_id"].isin(index.index)].copy()
    logs["post"] = index[logs["animal_id"]].to_numpy()
    logs["time"] = _seconds(logs["created_at"])
    logs["grade"] = logs["action"].map(ACTION_GRADE).fillna(0).astype(int)

    searches = (
        logs.groupby("search_id", sort=False)
        .agg(
            time=("time", "min"),
            phrases=("phrases", "first"),
            animal_category_id=("animal_category_id", "first"),
            animal_subcategory_id=("animal_subcategory_id", "first"),
            sort_by=("sort_by", "first"),
        )
        .reset_index()
        .sort_values(["time", "search_id"], ignore_index=True)
    )
    searches["phrases"] = searches["phrases"].map(
        lambda p: tuple(json.loads(p) if isinstance(p, str) else p)
    )
    searches["filtered"] = (
        searches["animal_category_id"].notna() | searches["animal_subcategory_id"].notna()
    )
    n = len(searches)
    train_end, validation_end = (
        int(n * (1 - validation_share - test_share)),
        int(n * (1 - test_share)),
    )
    searches["split"] = np.select(
        [np.arange(n) < train_end, np.arange(n) < validation_end], ["train", "validation"], "test"
    )
    search_index = pd.Series(np.arange(n), index=searches["search_id"])

    shown = logs[logs["action"] == "impression"]
    impressions = shown[["search_id", "post", "position"]].copy()
    grades = logs.groupby(["search_id", "post"])["grade"].max()
    impressions["grade"] = grades.reindex(
        pd.MultiIndex.from_frame(impressions[["search_id", "post"]])
    ).to_numpy()
    impressions["search"] = search_index[impressions["search_id"]].to_numpy()
    impressions = impressions[impressions["position"].notna()]
    impressions = impressions[impressions["position"] < RESULTS_SHOWN].astype(
        {"position": int, "grade": int}
    )
    impressions = impressions.sort_values(["search", "position"], ignore_index=True)

    # Propensities from the training searches only: the test searches stay unseen.
    in_train = searches["split"].to_numpy()[impressions["search"]] == "train"
    positions = impressions["position"].to_numpy()
    randomized = searches["sort_by"].to_numpy()[impressions["search"]] == "score"
    propensities = estimate_propensities(
        positions[in_train], impressions["grade"].to_numpy()[in_train] >= 1, randomized[in_train]
    )
    time = searches["time"].to_numpy()[impressions["search"]]
    post = impressions["post"].to_numpy()
    grade = impressions["grade"].to_numpy()
    histories = {
        "likes": History(index[likes["animal_id"]].to_numpy(), _seconds(likes["created_at"])),
        "impressions": History(post, time),
        "examinations": History(post, time, propensities[positions]),
        "selects": History(post[grade >= 1], time[grade >= 1]),
        "see_longs": History(post[grade >= 2], time[grade >= 2]),
        "logged_likes": History(post[grade >= 3], time[grade >= 3]),
        "owner_posts": History(posts["owner"].to_numpy(), posts["created"].to_numpy()),
    }
    fingerprint = hashlib.sha256(
        pd.util.hash_pandas_object(impressions[["search_id", "post", "position", "grade"]])
        .to_numpy()
        .tobytes()
        + pd.util.hash_pandas_object(posts[["id", "created"]]).to_numpy().tobytes()
    ).hexdigest()[:16]
    return RankingData(posts, searches, impressions, propensities, histories, fingerprint)
