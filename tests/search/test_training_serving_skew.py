"""Training/serving skew: for the posts a search is served, the feature rows the API scores
(`mlsys.api.ranking.serving_columns`: the engine's hits, post_activity, the query) equal the
rows `train-ranker` builds for the same posts at the same moment (`RankingData.features`:
point-in-time histories of the logs), on the small seeded data with its online features
just computed. The raw columns are gathered twice, by two components, so only this
comparison shows them agreeing."""

import shutil
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mlsys.aianimals.ranking import FEATURES, RERANK_CANDIDATES, feature_matrix
from tests.helpers.cli import local_env, run_cli

pytestmark = pytest.mark.slow
QUERIES = [["ねこ"], ["イヌ"], ["かわいい", "猫"], ["ポメラニアン"]]


def test_the_api_scores_the_rows_training_builds_for_the_same_posts(ranked_home, local_home):
    from mlsys.aianimals.database import get_engine
    from mlsys.aianimals.ranking_data import read_ranking_data
    from mlsys.aianimals.search import SearchQuery, SortBy, get_search_index
    from mlsys.api.ranking import ActivityCache, serving_columns

    shutil.copytree(ranked_home, local_home)
    run_cli("mlsys.search", "features", env=local_env(local_home))  # post_activity as of now
    now = int(time.time()) + 1  # after everything the features job counted
    engine = get_engine()
    data = read_ranking_data(engine, min_searches=0)
    index, activity = get_search_index(), ActivityCache(engine)
    post_of = pd.Series(np.arange(len(data.posts)), index=data.posts["id"])
    compared = 0
    for phrases in QUERIES:
        query = SearchQuery(phrases=phrases, sort_by=SortBy.like, limit=RERANK_CANDIDATES)
        hits = index.search(query).results
        assert hits, phrases
        ids = [hit.id for hit in hits]
        served = feature_matrix(serving_columns(hits, phrases, False, activity.get(ids), now))
        # The same search as training sees it once logged: a search at `now`, these posts.
        logged = pd.DataFrame({"time": [now], "phrases": [tuple(phrases)], "filtered": [False]})
        with_search = replace(data, searches=pd.concat([data.searches, logged], ignore_index=True))
        search = np.full(len(ids), len(with_search.searches) - 1)
        built = with_search.features(search, post_of[ids].to_numpy())
        differing = [
            name for column, name in enumerate(FEATURES)
            if not np.allclose(served[:, column], built[:, column], rtol=1e-9, atol=1e-9)
        ]  # fmt: skip
        assert differing == [], f"{phrases}: {differing}"
        compared += len(ids)
    assert compared >= 50  # enough rows to mean something
