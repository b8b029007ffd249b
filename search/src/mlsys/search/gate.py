"""The champion gate: a new ranker version becomes the champion only if it beats the
current champion on the same held-out searches (NDCG@10 of the logged actions)."""

from mlsys.aianimals.ranking import RANKER_MODEL_NAME
from mlsys.common.logging import get_logger
from mlsys.common.tracking import CHAMPION, current_champion, promote_if_better
from mlsys.search.dataset import RankingData
from mlsys.search.evaluate import TermIndex, evaluate_logged
from mlsys.search.tracking import GATE_METRIC

log = get_logger(__name__)


def gate(data: RankingData, version: int, candidate: float, terms: TermIndex) -> bool:
    import mlflow

    champion = current_champion(RANKER_MODEL_NAME, GATE_METRIC)
    champion_metric = None
    if champion is not None:
        booster = mlflow.lightgbm.load_model(f"models:/{RANKER_MODEL_NAME}@{CHAMPION}")
        scored = evaluate_logged(data, {"champion": booster.predict}, terms)
        champion_metric = scored["champion"]["ndcg@10"]
    return promote_if_better(
        RANKER_MODEL_NAME,
        version,
        GATE_METRIC,
        candidate,
        champion_metric=champion_metric,
        higher_is_better=True,
    )
