"""The champion gate: a ranker version becomes the champion only if it beats the current
champion on the same held-out searches (NDCG@10 of the randomized logged searches of the
test split), both scored now, on the same data."""

from mlsys.aianimals.ranking import RANKER_MODEL_NAME
from mlsys.aianimals.ranking_data import RankingData
from mlsys.common.logging import get_logger
from mlsys.common.tracking import CHAMPION_VERSION, champion_gate, configure_tracking, model_uri
from mlsys.search.evaluate import evaluate_logged
from mlsys.search.tracking import GATE_METRIC

log = get_logger(__name__)


def _scored(data: RankingData, uri: str) -> float:
    import mlflow

    booster = mlflow.lightgbm.load_model(uri)
    return evaluate_logged(data, {"model": booster.predict})["model"]["ndcg@10"]


def gate(data: RankingData, version: int) -> bool:
    """Promote `version` if it beats the champion; True when it is the champion now."""
    configure_tracking()  # the gate alone (promote-ranker) loads before anything else would
    verdict = champion_gate(
        RANKER_MODEL_NAME,
        version,
        GATE_METRIC,
        _scored(data, model_uri(RANKER_MODEL_NAME, version)),
        lambda _: _scored(data, model_uri(RANKER_MODEL_NAME, CHAMPION_VERSION)),
        higher_is_better=True,
    )
    return verdict.already_champion or verdict.beats
