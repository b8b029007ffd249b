"""Error metrics and the naive baselines every model is compared with."""

import numpy as np
import pandas as pd

BASELINES = ("last_week", "mean_4_weeks")  # frame columns of weekly_frame


def metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    actual = np.asarray(actual, dtype=float)
    error = np.asarray(predicted, dtype=float) - actual
    nonzero = actual != 0
    return {
        "mae": float(np.mean(np.abs(error))),
        "rmse": float(np.sqrt(np.mean(error**2))),
        "wape": float(np.sum(np.abs(error)) / np.sum(np.abs(actual))),
        "mape": float(np.mean(np.abs(error[nonzero] / actual[nonzero]))),
    }


def compare(rows: pd.DataFrame, model_prediction: np.ndarray) -> dict[str, dict[str, float]]:
    """Metrics of the model and of each baseline on the same rows."""
    result = {"model": metrics(rows["sales"], model_prediction)}
    for name in BASELINES:
        predicted = rows[name].fillna(rows["base"])  # a baseline without history falls back
        result[name] = metrics(rows["sales"], predicted)
    return result


def mean_over_weeks(weeks: list[dict]) -> dict[str, dict[str, float]]:
    names = [name for name in weeks[0] if name != "week"]
    return {
        name: {key: float(np.mean([w[name][key] for w in weeks])) for key in weeks[0][name]}
        for name in names
    }
