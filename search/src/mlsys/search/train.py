"""Training the rankers on the logged impressions of the training searches.

- `ranker`: LightGBM lambdarank, one group per search, graded labels (ACTION_GRADE);
  position bias corrected by LightGBM's unbiased lambdarank, which estimates a bias
  factor per position jointly with the model (`Dataset(position=...)`).
- `regressor`: LightGBM regression on the same grades, as the original had; position
  bias corrected by inverse propensity weights (the propensities estimated from the logs).

The rates are constrained to raise a post's score (monotone): more of its examined
impressions acted on never makes it rank lower. The number of trees of each model is
chosen on the validation searches (NDCG@10 of the randomized logged searches, see
`mlsys.search.evaluate`); the test searches are never seen here.
"""

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np

from mlsys.aianimals.ranking import CATEGORICAL, FEATURES
from mlsys.aianimals.ranking_data import RankingData
from mlsys.common.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class RankerParams:
    num_leaves: int = 15
    learning_rate: float = 0.05
    min_data_in_leaf: int = 300
    num_boost_round: int = 200
    seed: int = 0

    def lightgbm(self) -> dict:
        monotone = ("select_rate", "see_long_rate", "like_rate")
        return {
            "num_leaves": self.num_leaves,
            "learning_rate": self.learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "monotone_constraints": [int(name in monotone) for name in FEATURES],
            "feature_fraction": 0.9,
            "bagging_fraction": 0.9,
            "bagging_freq": 1,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": 2,
            "verbose": -1,
        }


@dataclass
class Trained:
    ranker: lgb.Booster
    regressor: lgb.Booster
    validation: dict[str, dict[int, float]]  # model -> trees -> validation NDCG@10


def _split(data: RankingData, name: str):
    rows = data.impressions[
        data.searches["split"].to_numpy()[data.impressions["search"].to_numpy()] == name
    ]
    search, post = rows["search"].to_numpy(), rows["post"].to_numpy()
    groups = np.bincount(np.unique(search, return_inverse=True)[1])
    features = data.features(search, post)
    return features, rows["grade"].to_numpy(), rows["position"].to_numpy(), groups


def _best_trees(data: RankingData, booster: lgb.Booster) -> tuple[lgb.Booster, dict[int, float]]:
    """The booster cut at the number of trees that did best on the validation searches."""
    from mlsys.search.evaluate import evaluate_logged

    trees = booster.num_trees()
    candidates = sorted({n for n in (1, 10, 25, 50, 100, 200, 400, trees) if n <= trees})

    def scorer(trees: int):
        return lambda rows: booster.predict(rows, num_iteration=trees)

    scored = {
        n: evaluate_logged(data, {"m": scorer(n)}, split="validation")
        .get("m", {})
        .get("ndcg@10", 0.0)
        for n in candidates
    }
    best = max(scored, key=lambda n: (scored[n], -n))
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), scored


def train(data: RankingData, params: RankerParams) -> Trained:
    x, y, position, groups = _split(data, "train")
    names = list(FEATURES)
    categorical = [FEATURES.index(c) for c in CATEGORICAL]
    log.info("training on %d impressions of %d searches", len(y), len(groups))
    ranker = lgb.train(
        {
            **params.lightgbm(),
            "objective": "lambdarank",
            "lambdarank_truncation_level": 20,
        },
        lgb.Dataset(
            x,
            y,
            group=groups,
            position=position,
            feature_name=names,
            categorical_feature=categorical,
        ),
        num_boost_round=params.num_boost_round,
    )
    # Inverse propensity weights: a result at a rarely examined position that was acted
    # on stands for the many times it would have been acted on at the top.
    weight = np.where(y > 0, 1 / data.propensities[position], 1.0)
    regressor = lgb.train(
        {**params.lightgbm(), "objective": "regression"},
        lgb.Dataset(x, y, weight=weight, feature_name=names, categorical_feature=categorical),
        num_boost_round=params.num_boost_round,
    )
    ranker, ranker_scores = _best_trees(data, ranker)
    regressor, regressor_scores = _best_trees(data, regressor)
    log.info(
        "ranker: %d trees, regressor: %d trees (chosen on the validation searches)",
        ranker.num_trees(),
        regressor.num_trees(),
    )
    return Trained(ranker, regressor, {"ranker": ranker_scores, "regressor": regressor_scores})
