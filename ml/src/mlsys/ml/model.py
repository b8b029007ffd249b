"""LightGBM on the ratio actual / level forecast; predictions are base x ratio."""

from typing import Any, cast

import lightgbm as lgb
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from mlsys.ml.features import FEATURES


def training_rows(frame: pd.DataFrame, before: pd.Timestamp, cfg: DictConfig) -> pd.DataFrame:
    """Complete weeks before `before` with enough history and a usable level forecast."""
    rows = frame[
        (frame["week_start"] < before)
        & frame["sales"].notna()
        & (frame["history_weeks"] >= cfg.features.min_history_weeks)
        & (frame["base"] > 0)
    ]
    return rows


def fit(rows: pd.DataFrame, cfg: DictConfig) -> lgb.Booster:
    if rows.empty:
        raise ValueError("no training rows: register more weeks of sales first")
    target = rows["sales"] / rows["base"]
    params = cast(dict[str, Any], OmegaConf.to_container(cfg.model.params, resolve=True))
    dataset = lgb.Dataset(rows[FEATURES], label=target, free_raw_data=False)
    return lgb.train(params, dataset, num_boost_round=cfg.model.num_boost_round)


def predict(booster: lgb.Booster, rows: pd.DataFrame) -> np.ndarray:
    """Weekly sales forecasts; a row without a level forecast gets NaN."""
    ratio = booster.predict(rows[FEATURES])
    return np.clip(rows["base"].to_numpy() * ratio, 0, None)
