"""The experiment report's arithmetic, on access logs made by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlsys.ab_test_proxy.config import Experiment
from mlsys.ab_test_proxy.report import per_search, report

EXPERIMENT = Experiment.model_validate({
    "name": "e", "mode": "user", "upstream": "http://api",
    "variants": [{"name": "a", "weight": 1, "sort_by": "learn_to_rank"},
                 {"name": "b", "weight": 1, "sort_by": "like"}],
})  # fmt: skip


def logs_of(searches: list[tuple[str, list[int]]]) -> pd.DataFrame:
    """(variant, grades in the order shown) per search -> access log rows."""
    rows = []
    actions = ["select", "see_long", "like"]
    for number, (variant, grades) in enumerate(searches):
        search_id = f"{number:032x}"
        for position, grade in enumerate(grades):
            animal = f"{position:032x}"
            rows.append((search_id, animal, "impression", position, f"e:{variant}"))
            rows += [(search_id, animal, a, position, f"e:{variant}") for a in actions[:grade]]
    return pd.DataFrame(
        rows, columns=["search_id", "animal_id", "action", "position", "model_name"]
    )


def test_per_search_ctr_and_ndcg():
    searches = per_search(logs_of([("a", [0, 1, 0, 3]), ("b", [0, 0, 0, 0])]))
    first = searches.iloc[0]
    assert first["variant"] == "a" and first["ctr"] == pytest.approx(0.5)
    gains = np.array([0, 1, 0, 7])
    expected = (1 / np.log2(3) + 7 / np.log2(5)) / (7 + 1 / np.log2(3))
    assert first["ndcg@10"] == pytest.approx(expected)
    assert searches.iloc[1]["ctr"] == 0 and searches.iloc[1]["ndcg@10"] == 0  # gains.any()
    assert gains.sum() == 8


def test_means_intervals_tests_and_sample_ratio():
    rng = np.random.default_rng(1)
    made = [("a", list(rng.integers(0, 2, 10) * rng.integers(1, 4, 10))) for _ in range(60)]
    made += [("b", list(rng.integers(0, 2, 10) * (rng.random(10) < 0.3))) for _ in range(60)]
    searches = per_search(logs_of(made))
    result = report(searches, EXPERIMENT)
    for name in ("a", "b"):
        ctr = searches.loc[searches["variant"] == name, "ctr"].to_numpy()
        variant = result["variants"][name]
        assert variant["searches"] == 60
        assert variant["ctr"] == pytest.approx(ctr.mean(), abs=1e-4)
        half = stats.t.ppf(0.975, 59) * ctr.std(ddof=1) / math.sqrt(60)
        assert variant["ctr_95"] == pytest.approx([ctr.mean() - half, ctr.mean() + half], abs=1e-4)
    a = searches.loc[searches["variant"] == "a", "ndcg@10"]
    b = searches.loc[searches["variant"] == "b", "ndcg@10"]
    comparison = result["comparisons"]["a_vs_b"]
    assert comparison["ndcg@10_p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert comparison["ctr_p"] < 0.05  # a's users select far more
    assert result["sample_ratio"] == {
        "expected": {"a": 0.5, "b": 0.5}, "observed": {"a": 0.5, "b": 0.5},
        "p": pytest.approx(1.0), "mismatch": False,
    }  # fmt: skip


def test_a_split_far_from_the_configured_one_is_a_mismatch():
    made = [("a", [1, 0])] * 600 + [("b", [1, 0])] * 400
    result = report(per_search(logs_of(made)), EXPERIMENT)
    assert result["sample_ratio"]["mismatch"] is True
    assert result["sample_ratio"]["p"] == pytest.approx(stats.chisquare([600, 400]).pvalue)
