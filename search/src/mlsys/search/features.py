"""The online features: every post's activity as of now (`ranking.ACTIVITY`), computed
from the access logs with the same code as the training features, and written to the
post_activity table that the API's learn_to_rank reads."""

from datetime import UTC, datetime

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from mlsys.aianimals.ranking import ACTIVITY, FEATURE_SET_VERSION
from mlsys.aianimals.ranking_data import RankingData
from mlsys.aianimals.tables import PostActivity
from mlsys.common.bulk import bulk_upsert


def current_activity(data: RankingData, now: datetime) -> pd.DataFrame:
    post = np.arange(len(data.posts))
    seconds = np.full(len(post), int(now.timestamp()) + 1)  # everything up to now counts
    counts = data.activity(post, seconds)
    return pd.DataFrame(
        {
            "animal_id": data.posts["id"].to_numpy(),
            "feature_set_version": FEATURE_SET_VERSION,
            **{name: counts[name] for name in ACTIVITY},
            "updated_at": pd.Timestamp(now),
        }
    )


def write_activity(engine: Engine, frame: pd.DataFrame) -> int:
    with engine.begin() as connection:
        return bulk_upsert(connection, PostActivity, frame)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
