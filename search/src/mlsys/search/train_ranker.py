"""The search-ranker job (`python -m mlsys.search train-ranker`, the search-ranker
CronWorkflow): train the lambdarank ranker and the regressor on the earliest logged
searches, choose the one served on the validation searches, evaluate both and the
baselines on the latest ones (the logged actions; the hidden quality where the generator
wrote it), register the chosen one and, unless told not to, gate it against the champion."""

from dataclasses import dataclass

import pandas as pd

from mlsys.aianimals.ranking_data import NotEnoughData, RankingData
from mlsys.search.train import RankerParams

REPORT_KEYS = ("hidden_quality", "logged_clicks", "gap_closed", "chosen", "untokenizable_posts")


@dataclass
class RankerOutcome:
    report: dict
    version: int
    promoted: bool = False


def train_ranker(
    data: RankingData, params: RankerParams, quality: pd.Series | None, promote: bool
) -> RankerOutcome:
    """`quality`: the generator's hidden quality, for evaluation only (never a feature or
    a label)."""
    from mlsys.aianimals.ranking import RANKER_MODEL_NAME
    from mlsys.search.evaluate import TextScores, evaluate_hidden, evaluate_logged, gap_closed
    from mlsys.search.gate import gate
    from mlsys.search.tracking import log_ranker_run
    from mlsys.search.train import train

    trained = train(data, params)
    rankers = {"ranker": trained.ranker.predict, "regressor": trained.regressor.predict}
    terms = TextScores(data.posts["name"].tolist(), data.posts["description"].tolist())
    # The model served is chosen on the validation searches; the test searches only report.
    chosen = max(rankers, key=lambda name: max(trained.validation[name].values()))
    report: dict = {"logged_clicks": evaluate_logged(data, rankers, terms), "chosen": chosen}
    if "ndcg@10" not in report["logged_clicks"][chosen]:
        raise NotEnoughData(
            "no test search can be scored: none ordered by text score (the randomized order "
            "evaluation needs) has a selected result"
        )
    # A post the tokenizer refuses is skipped by the evaluation, not the end of the job.
    report["untokenizable_posts"] = len(terms.untokenizable)
    if quality is not None:
        report["hidden_quality"] = evaluate_hidden(data, rankers, terms, quality)
        served, likes = report["hidden_quality"][chosen], report["hidden_quality"]["likes"]
        report["gap_closed"] = round(gap_closed(served["ndcg@10"], likes["ndcg@10"]), 4)
    report = {key: report[key] for key in REPORT_KEYS if key in report}
    _, version = log_ranker_run(
        trained=trained,
        chosen=chosen,
        params=params,
        report=report,
        propensities=data.propensities,
        fingerprint=data.fingerprint,
        registered_model_name=RANKER_MODEL_NAME,
        drift_reference=drift_reference(data),
    )
    assert version is not None  # registered just above
    return RankerOutcome(report, version, promoted=gate(data, version) if promote else False)


def drift_reference(data: RankingData) -> pd.DataFrame:
    """What the ranker's drift check compares the results shown since with: the features of
    the results shown in the test searches (the latest before training, where the model's
    reported quality was measured), a seeded sample of at most DRIFT_REFERENCE_ROWS."""
    from mlsys.aianimals.ranking import DRIFT_REFERENCE_ROWS

    shown = data.shown_features((data.searches["split"] == "test").to_numpy())
    if len(shown) <= DRIFT_REFERENCE_ROWS:
        return shown
    return shown.sample(DRIFT_REFERENCE_ROWS, random_state=0).sort_index()
