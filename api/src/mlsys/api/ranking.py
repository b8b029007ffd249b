"""learn_to_rank in the API: the champion ranker (loaded once, reloaded when the champion
alias moves, checked in the background, never on a request), the posts' online features
(post_activity, remembered for a minute) and the reranking of the engine's candidates."""

import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Engine, select

from mlsys.aianimals.ranking import (
    ACTIVITY,
    FEATURE_SET_VERSION,
    RANKER_MODEL_NAME,
    feature_matrix,
    query_features,
)
from mlsys.aianimals.search import SearchHit
from mlsys.aianimals.tables import PostActivity
from mlsys.common.logging import get_logger
from mlsys.common.tracking import ChampionWatch, model_uri

log = get_logger(__name__)
REFRESH_SECONDS = 30.0  # how soon a moved champion alias is served
ACTIVITY_SECONDS = 60.0  # how long a post's online features are remembered


@dataclass(frozen=True)
class LoadedModel:
    version: int
    booster: object  # lightgbm.Booster (imported with MLflow, in the background)

    @property
    def name(self) -> str:
        return f"{RANKER_MODEL_NAME}/{self.version}"


def _load_ranker(version: int) -> LoadedModel:
    import mlflow

    booster = mlflow.lightgbm.load_model(model_uri(RANKER_MODEL_NAME, version))
    return LoadedModel(version, booster)


def champion_ranker(refresh_seconds: float = REFRESH_SECONDS) -> ChampionWatch[LoadedModel]:
    """The champion of RANKER_MODEL_NAME, as this replica serves it."""
    return ChampionWatch(RANKER_MODEL_NAME, _load_ranker, refresh_seconds, what="ranker")


class ActivityCache:
    """Posts' online features from post_activity, each remembered ACTIVITY_SECONDS; a post
    without a row (just posted) has none yet: zeros."""

    def __init__(self, engine: Engine, seconds: float = ACTIVITY_SECONDS):
        self.engine, self.seconds = engine, seconds
        self._rows: dict[str, tuple[float, tuple[float, ...]]] = {}

    def get(self, ids: list[str]) -> np.ndarray:
        """len(ids) x len(ACTIVITY) counts."""
        now = time.monotonic()
        missing = [i for i in ids if (i not in self._rows) or self._rows[i][0] < now]
        if missing:
            columns = [getattr(PostActivity, name) for name in ACTIVITY]
            with self.engine.connect() as connection:
                rows = connection.execute(
                    select(PostActivity.animal_id, *columns).where(
                        PostActivity.animal_id.in_(missing),
                        PostActivity.feature_set_version == FEATURE_SET_VERSION,
                    )
                ).all()
            found = {row[0]: tuple(float(v) for v in row[1:]) for row in rows}
            zeros = (0.0,) * len(ACTIVITY)
            for animal_id in missing:
                self._rows[animal_id] = (now + self.seconds, found.get(animal_id, zeros))
        return np.array([self._rows[i][1] for i in ids]).reshape(len(ids), len(ACTIVITY))


class PredictionFailed(Exception):
    """The ranker refused the features (a model trained on another feature set)."""


@dataclass
class Ranking:
    """What learn_to_rank needs, built once per process (app.state.ranking)."""

    ranker: ChampionWatch[LoadedModel]
    activity: ActivityCache


def serving_columns(
    hits: list[SearchHit], phrases: list[str], filtered: bool, counts: np.ndarray, now: float
) -> dict[str, np.ndarray]:
    """The raw columns of the hits' feature rows as the API scores them at `now` (epoch
    seconds): the online features from post_activity (`counts`, ACTIVITY's order), the
    like count the engine holds (fresher than any job's), the post and the query."""
    columns = {name: counts[:, i] for i, name in enumerate(ACTIVITY)}
    columns["likes"] = np.array([hit.like for hit in hits], dtype=float)  # the freshest count
    columns["age_days"] = np.array([(now - hit.created_at.timestamp()) / 86400 for hit in hits])
    columns["animal_category_id"] = np.array([hit.animal_category_id for hit in hits])
    columns["animal_subcategory_id"] = np.array([hit.animal_subcategory_id for hit in hits])
    columns.update(
        query_features(
            [tuple(phrases)] * len(hits),
            [hit.animal_subcategory_name_ja for hit in hits],
            [hit.name for hit in hits],
        )
    )
    columns["filtered"] = np.full(len(hits), float(filtered))
    return columns


def rerank(
    hits: list[SearchHit],
    phrases: list[str],
    filtered: bool,
    model: LoadedModel,
    activity: ActivityCache,
) -> list[SearchHit]:
    """The hits in the model's order (stable: ties keep the engine's order)."""
    if not hits:
        return hits
    counts = activity.get([hit.id for hit in hits])
    columns = serving_columns(hits, phrases, filtered, counts, datetime.now(UTC).timestamp())
    # One thread: 100 rows are too few to share, and OpenMP teams of concurrent requests
    # would spin against each other on the API's cores.
    from lightgbm.basic import LightGBMError  # imported with the model already

    try:
        scores = model.booster.predict(feature_matrix(columns), num_threads=1)  # type: ignore[attr-defined]
    except (LightGBMError, ValueError) as error:
        raise PredictionFailed(repr(error)) from error
    return [hits[i] for i in np.argsort(-scores, kind="stable")]
