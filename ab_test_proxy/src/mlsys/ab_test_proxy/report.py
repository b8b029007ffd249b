"""An experiment's report, from the access logs the proxy labelled (model_name =
experiment:variant). Per search: its click-through rate (selected results / results shown)
and NDCG@10 of what the user did (ACTION_GRADE gains in the order shown). Per variant: the
searches and both means with 95% intervals; the first variant against each other one:
the differences and Welch's t-test (the search is the unit: its results are not
independent draws); and the sample-ratio-mismatch check, a chi-square test of the
searches per variant against the configured shares, which warns when p < 0.001 (then the
split itself is broken, and no comparison can be trusted)."""

import math

import numpy as np
import pandas as pd
from scipy import stats
from sqlalchemy import Engine, select

from mlsys.ab_test_proxy.config import Experiment
from mlsys.aianimals.ranking import ACTION_GRADE, logged_gain, ndcg
from mlsys.aianimals.tables import AccessLog

SRM_ALPHA = 0.001
METRICS = ("ctr", "ndcg@10")


def read_logs(engine: Engine, experiment: Experiment) -> pd.DataFrame:
    labels = [experiment.label(v) for v in experiment.variants]
    with engine.connect() as connection:
        return pd.read_sql(
            select(
                AccessLog.search_id, AccessLog.animal_id, AccessLog.action, AccessLog.position,
                AccessLog.model_name,
            ).where(AccessLog.model_name.in_(labels)),
            connection,
        )  # fmt: skip


def per_search(logs: pd.DataFrame) -> pd.DataFrame:
    """One row per search that showed results: its variant, CTR and NDCG@10."""
    logs = logs.assign(grade=logs["action"].map(ACTION_GRADE).fillna(0).astype(int))
    shown = logs[logs["action"] == "impression"][
        ["search_id", "animal_id", "position", "model_name"]
    ]
    grades = logs.groupby(["search_id", "animal_id"])["grade"].max()
    shown = shown.join(grades, on=["search_id", "animal_id"]).sort_values(["search_id", "position"])
    rows = []
    for search_id, results in shown.groupby("search_id", sort=False):
        grade = results["grade"].to_numpy()
        gains = logged_gain(grade)
        rows.append(
            {
                "search_id": search_id,
                "variant": results["model_name"].iloc[0].split(":", 1)[1],
                "ctr": float((grade >= 1).mean()),
                "ndcg@10": ndcg(gains, gains) or 0.0,
            }
        )
    return pd.DataFrame(rows, columns=["search_id", "variant", *METRICS])


def _mean_interval(values: np.ndarray) -> tuple[float, list[float]]:
    if len(values) == 0:
        return 0.0, [0.0, 0.0]
    mean = float(values.mean())
    if len(values) < 2:
        return round(mean, 4), [round(mean, 4)] * 2
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return round(mean, 4), [round(mean - half, 4), round(mean + half, 4)]


def _welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p of Welch's t-test; without spread, 1 for equal means and 0 otherwise."""
    if min(len(a), len(b)) < 2:
        return 1.0
    if a.std() == 0 and b.std() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def report(searches: pd.DataFrame, experiment: Experiment) -> dict:
    names = [v.name for v in experiment.variants]
    values = {
        name: {m: searches.loc[searches["variant"] == name, m].to_numpy(dtype=float)
               for m in METRICS}
        for name in names
    }  # fmt: skip
    variants = {}
    for name in names:
        summary: dict = {"searches": len(values[name]["ctr"])}
        for metric in METRICS:
            summary[metric], summary[f"{metric}_95"] = _mean_interval(values[name][metric])
        variants[name] = summary
    comparisons = {}
    first = names[0]
    for other in names[1:]:
        comparison = {}
        for metric in METRICS:
            a, b = values[first][metric], values[other][metric]
            comparison[f"{metric}_difference"] = round(
                variants[first][metric] - variants[other][metric], 4
            )
            comparison[f"{metric}_p"] = _welch_p(a, b)
        comparisons[f"{first}_vs_{other}"] = comparison
    observed = np.array([variants[n]["searches"] for n in names], dtype=float)
    total = observed.sum()
    shares = np.array(experiment.shares())
    srm_p = float(stats.chisquare(observed, shares * total).pvalue) if total else 1.0
    return {
        "experiment": experiment.name,
        "mode": str(experiment.mode),
        "variants": variants,
        "comparisons": comparisons,
        "sample_ratio": {
            "expected": {n: round(float(s), 4) for n, s in zip(names, shares, strict=True)},
            "observed": {
                n: round(variants[n]["searches"] / total, 4) if total else 0.0 for n in names
            },
            "p": srm_p,
            "mismatch": srm_p < SRM_ALPHA,
        },
    }
