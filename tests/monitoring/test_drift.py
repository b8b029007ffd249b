"""The drift tests (mlsys.monitoring.drift) with Evidently's defaults: each method where
Evidently uses it, silent on samples of one distribution (at most 1 dataset flagged in 20
seeds), and each shift a forecaster meets found: the sales level, prices, a store closing."""

import numpy as np
import pandas as pd
import pytest

from mlsys.monitoring.drift import column_drift, dataset_drift

STORES = [f"store_{i}" for i in range(10)]


def sales(rows: int, seed: int, level: float = 1.0, price: float = 1.0, closed=()) -> pd.DataFrame:
    """Store-item weeks: units sold (skewed), the price, the store."""
    rng = np.random.default_rng(seed)
    open_stores = [store for store in STORES if store not in closed]
    return pd.DataFrame(
        {
            "units": rng.lognormal(3.0, 0.6, rows) * level,
            "price": rng.normal(150.0, 20.0, rows) * price,
            "store": rng.choice(open_stores, rows),
        }
    )


@pytest.mark.parametrize(
    ("reference_rows", "numerical", "categorical"),
    [(800, "ks", "chi2"), (5_000, "wasserstein", "jensenshannon")],
)
def test_each_method_where_evidently_uses_it(reference_rows, numerical, categorical):
    reference, current = sales(reference_rows, 0), sales(500, 1)
    result = dataset_drift(reference, current, categorical={"store"})
    assert result.column("units").method == numerical
    assert result.column("store").method == categorical


def test_a_binary_column_of_a_small_reference_is_z_tested():
    rng = np.random.default_rng(0)
    reference = pd.Series(rng.random(500) < 0.2)
    assert (
        column_drift("flag", reference, pd.Series(rng.random(500) < 0.2), "categorical").method
        == "z"
    )
    shifted = column_drift("flag", reference, pd.Series(rng.random(500) < 0.4), "categorical")
    assert shifted.drifted and shifted.score < 0.05


@pytest.mark.parametrize("reference_rows", [800, 5_000])
def test_samples_of_one_distribution_flag_at_most_one_seed_in_twenty(reference_rows):
    flagged = [
        seed
        for seed in range(20)
        if dataset_drift(
            sales(reference_rows, seed), sales(700, 1_000 + seed), categorical={"store"}
        ).drifted
    ]
    assert len(flagged) <= 1, flagged


@pytest.mark.parametrize("reference_rows", [800, 5_000])
@pytest.mark.parametrize(
    ("shift", "column"),
    [
        ({"level": 1.5}, "units"),  # demand up by half
        ({"price": 1.2}, "price"),  # prices up by a fifth
        ({"closed": ("store_3",)}, "store"),  # a store closed
    ],
)
def test_each_shift_a_forecaster_meets_is_found(reference_rows, shift, column):
    for seed in range(5):
        result = dataset_drift(
            sales(reference_rows, seed), sales(700, 100 + seed, **shift), categorical={"store"}
        )
        assert result.column(column).drifted, (seed, result.column(column))
        others = [c for c in result.columns if c.column != column]
        assert not all(c.drifted for c in others)


def test_a_dataset_drifts_when_half_its_columns_do():
    reference = sales(5_000, 0)
    one = dataset_drift(reference, sales(700, 1, level=1.5), categorical={"store"})
    assert (round(one.share, 2), one.drifted) == (0.33, False)
    two = dataset_drift(reference, sales(700, 1, level=1.5, price=1.2), categorical={"store"})
    assert (round(two.share, 2), two.drifted) == (0.67, True)


def test_what_cannot_be_compared_is_refused():
    with pytest.raises(ValueError, match="lacks the columns"):
        dataset_drift(sales(100, 0), sales(100, 1).drop(columns="price"))
    with pytest.raises(ValueError, match="reference has no values"):
        column_drift("units", pd.Series([np.nan]), pd.Series([1.0, 2.0]), "numerical")


def test_a_column_whose_values_all_went_missing_drifted():
    gone = column_drift("units", pd.Series([1.0, 2.0]), pd.Series([np.nan, np.nan]), "numerical")
    assert (gone.method, gone.score, gone.drifted) == ("missing", 1.0, True)
