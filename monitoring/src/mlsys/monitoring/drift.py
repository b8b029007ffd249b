"""Drift tests, column by column and for a whole dataset, with Evidently's defaults
(its DataDriftPreset), computed with SciPy:

- a reference of at most 1,000 rows: a numerical column by the two-sample
  Kolmogorov-Smirnov test, a categorical one by the chi-square test (a binary one by the
  two-proportion Z-test); drift when p < 0.05;
- a larger reference: a numerical column with over 5 distinct values by the Wasserstein
  distance normed by the reference's standard deviation, any other by the Jensen-Shannon
  distance; drift when the distance is at least 0.1;
- a dataset drifts when at least half of its columns do.

Why SciPy rather than Evidently itself: the tests are a few lines each, and Evidently
would bring its report stack (plotly, nltk, its UI's dependencies) into a job's image for
them. The chi-square test is that of homogeneity (`chi2_contingency` on both samples'
counts): unlike a goodness-of-fit test against the reference's shares, it stays defined
when the current data holds a category the reference lacks.
"""

from collections.abc import Set
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance

SMALL_REFERENCE_ROWS = 1_000  # up to this many reference rows: statistical tests
P_VALUE = 0.05  # a test's drift: p below this
DISTANCE = 0.1  # a distance's drift: at least this
MANY_VALUES = 5  # a numerical column with more distinct values than this is continuous
DATASET_SHARE = 0.5  # a dataset drifts when at least this share of its columns drift

Kind = Literal["numerical", "categorical"]


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    kind: Kind
    method: str  # ks, chi2, z, wasserstein, jensenshannon
    score: float  # the p-value of a test, or a distance
    threshold: float
    drifted: bool


@dataclass(frozen=True)
class DatasetDrift:
    columns: list[ColumnDrift]
    share: float  # of columns that drifted
    drifted: bool

    def column(self, name: str) -> ColumnDrift:
        return next(result for result in self.columns if result.column == name)


def column_drift(
    name: str,
    reference: pd.Series,
    current: pd.Series,
    kind: Kind,
    threshold: float | None = None,
) -> ColumnDrift:
    """Whether `current` drifted from `reference` (missing values left out of both). With a
    `threshold`, a numerical column is judged by the normed Wasserstein distance against it
    at any size (Evidently's `stattest="wasserstein", stattest_threshold=threshold`).

    A column with no value left now, where the reference had some, drifted: whatever the
    model learned from it, it gets nothing of it (method `missing`, score 1: every value)."""
    reference, current = reference.dropna(), current.dropna()
    if reference.empty:
        raise ValueError(f"{name}: the reference has no values to compare with")
    if current.empty:
        return ColumnDrift(name, kind, "missing", 1.0, 1.0, True)
    if threshold is not None and kind == "numerical":
        return _measured(name, kind, "wasserstein", _wasserstein(reference, current), threshold)
    if len(reference) <= SMALL_REFERENCE_ROWS:
        if kind == "numerical":
            p = stats.ks_2samp(reference.to_numpy(float), current.to_numpy(float)).pvalue
            return _tested(name, kind, "ks", p)
        if reference.nunique() <= 2 and current.isin(reference.unique()).all():
            return _tested(name, kind, "z", _two_proportions(reference, current))
        table = pd.concat([reference.value_counts(), current.value_counts()], axis=1).fillna(0)
        return _tested(name, kind, "chi2", stats.chi2_contingency(table.to_numpy().T).pvalue)
    if kind == "numerical" and reference.nunique() > MANY_VALUES:
        return _measured(name, kind, "wasserstein", _wasserstein(reference, current))
    shares = pd.concat(
        [reference.value_counts(normalize=True), current.value_counts(normalize=True)], axis=1
    ).fillna(0)
    score = float(distance.jensenshannon(shares.iloc[:, 0], shares.iloc[:, 1]))
    return _measured(name, kind, "jensenshannon", score)


def dataset_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    categorical: Set[str] = frozenset(),
    threshold: float | None = None,
) -> DatasetDrift:
    """Every column of `reference` tested against the same in `current` (`threshold`: see
    `column_drift`)."""
    missing = set(reference.columns) - set(current.columns)
    if missing:
        raise ValueError(f"the current data lacks the columns {sorted(missing)}")
    results = [
        column_drift(
            str(name),
            reference[name],
            current[name],
            "categorical" if name in categorical else "numerical",
            threshold,
        )
        for name in reference.columns
    ]
    share = sum(result.drifted for result in results) / len(results)
    return DatasetDrift(results, share, share >= DATASET_SHARE)


def _tested(name: str, kind: Kind, method: str, p: float) -> ColumnDrift:
    return ColumnDrift(name, kind, method, float(p), P_VALUE, bool(p < P_VALUE))


def _measured(
    name: str, kind: Kind, method: str, score: float, threshold: float = DISTANCE
) -> ColumnDrift:
    return ColumnDrift(name, kind, method, float(score), threshold, bool(score >= threshold))


def _wasserstein(reference: pd.Series, current: pd.Series) -> float:
    """The Wasserstein distance in standard deviations of the reference."""
    values = reference.to_numpy(float)
    norm = max(float(np.std(values)), 0.001)
    return float(stats.wasserstein_distance(values, current.to_numpy(float)) / norm)


def _two_proportions(reference: pd.Series, current: pd.Series) -> float:
    """The two-proportion Z-test of the reference's most common value."""
    value = reference.mode().iloc[0]
    return two_proportions((reference == value).to_numpy(), (current == value).to_numpy())


def two_proportions(reference: np.ndarray, current: np.ndarray) -> float:
    """The two-sided p-value of the Z-test that the share of True is the same in both."""
    hits = np.array([reference.sum(), current.sum()], dtype=float)
    sizes = np.array([len(reference), len(current)], dtype=float)
    pooled = hits.sum() / sizes.sum()
    spread = np.sqrt(pooled * (1 - pooled) * (1 / sizes[0] + 1 / sizes[1]))
    if spread == 0:
        return 1.0  # all or none in both: nothing moved
    z = (hits[0] / sizes[0] - hits[1] / sizes[1]) / spread
    return float(2 * stats.norm.sf(abs(z)))
