"""The similar-words job (`python -m mlsys.search similar-words`, the similar-words
CronWorkflow): learn similar words from the posts and the searches before the test period,
report them on the local search engine with and without them, register them, and make
them the champion when they find more of the test searches' selected posts than the
champion does (and than searching without similar words, for the first version)."""

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlsys.common.tracking import Verdict

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimilarWordsOptions:
    synonym_queries: Path | None = None  # held-out queries with their meaning: the report's
    min_similarity: float = 0.15  # keep a similar word at least this similar
    top_k: int = 3  # at most this many similar words a word
    promote: bool = True


@dataclass
class SimilarWordsOutcome:
    report: dict
    version: int
    champion_recall: float | None = None  # the champion on the same searches
    verdict: "Verdict | None" = None  # the gate's, when promotion was asked


def learn_similar_words(options: SimilarWordsOptions) -> SimilarWordsOutcome:
    """Raises NotEnoughSearches when the logs cannot teach anything yet."""
    from mlsys.aianimals.database import get_engine, upgrade_or_wait
    from mlsys.aianimals.similar_words import SIMILAR_WORDS_MODEL_NAME
    from mlsys.common.tracking import CHAMPION_VERSION, champion_gate
    from mlsys.search.similar_words import (
        ExpansionEvaluator,
        WordParams,
        evaluate_logged,
        evaluate_synonym_queries,
        read_word_data,
        train_words,
    )
    from mlsys.search.tracking import WORDS_GATE_METRIC, log_words_run

    engine = get_engine()
    upgrade_or_wait(engine)
    params = WordParams(min_similarity=options.min_similarity, top_k=options.top_k)
    data = read_word_data(engine, params.test_share)
    started = time.monotonic()
    words, learned = train_words(data, params, log.info)
    seconds = time.monotonic() - started
    evaluator = ExpansionEvaluator(data.documents)
    try:
        models = {"typed": None, "expanded": words}
        report: dict = {"logged": evaluate_logged(data, evaluator, models)}
        if options.synonym_queries is not None and options.synonym_queries.exists():
            held_out = json.loads(options.synonym_queries.read_text())
            report["synonym_queries"] = evaluate_synonym_queries(
                held_out, data.documents, evaluator, models
            )
        report.update(learned=learned, learn_seconds=round(seconds, 2),
                      similar_words=words.table)  # fmt: skip
        _, version = log_words_run(
            words=words, params=params, report=report, fingerprint=data.fingerprint
        )
        outcome = SimilarWordsOutcome(report, version)
        if not options.promote:
            return outcome

        # The gate: the champion scored now on the same searches; the first version must
        # beat searching without similar words.
        def champion_recall(_) -> float:
            from mlsys.aianimals.similar_words_model import load_similar_words

            champion = {"champion": load_similar_words(CHAMPION_VERSION)}
            reference = evaluate_logged(data, evaluator, champion)["champion"]["recall"]
            outcome.champion_recall = reference
            return reference

        logged = report["logged"]
        verdict = champion_gate(SIMILAR_WORDS_MODEL_NAME, version, WORDS_GATE_METRIC,
                                logged["expanded"]["recall"], champion_recall,
                                higher_is_better=True, floor=logged["typed"]["recall"])  # fmt: skip
    finally:
        evaluator.close()
    outcome.verdict = verdict
    return outcome
