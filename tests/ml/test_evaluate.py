import numpy as np
import pytest

from mlsys.ml.backtest import iso_week, week_label
from mlsys.ml.evaluate import mean_over_weeks, metrics


def test_metrics_by_hand():
    scores = metrics(np.array([100, 200, 0]), np.array([110, 180, 5]))
    assert scores["mae"] == pytest.approx((10 + 20 + 5) / 3)
    assert scores["rmse"] == pytest.approx(np.sqrt((100 + 400 + 25) / 3))
    assert scores["wape"] == pytest.approx(35 / 300)
    assert scores["mape"] == pytest.approx((0.1 + 0.1) / 2)  # zero actuals are left out


def test_means_over_weeks():
    weeks = [
        {"week": "2021-01", "model": {"wape": 0.1}},
        {"week": "2021-02", "model": {"wape": 0.3}},
    ]
    assert mean_over_weeks(weeks) == {"model": {"wape": pytest.approx(0.2)}}


def test_iso_week_labels_round_trip():
    assert str(iso_week("2021-35").date()) == "2021-08-30"
    assert week_label(iso_week("2021-52")) == "2021-52"
    assert week_label(iso_week("2022-01")) == "2022-01"
