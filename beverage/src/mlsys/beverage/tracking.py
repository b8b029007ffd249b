"""The forecaster's names in MLflow, shared by the training job (which logs them) and the
BI (which reads them): defined here once."""

from enum import StrEnum

from pydantic_settings import BaseSettings, SettingsConfigDict


class ForecastingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLFLOW_")

    experiment_name: str = "beverage_sales_forecasting"
    registered_model_name: str = "beverage_sales_forecasting"


def forecasting_settings() -> ForecastingSettings:
    return ForecastingSettings()


class Forecaster(StrEnum):
    """The model and the naive baselines it is compared with on every backtest."""

    model = "model"
    last_week = "last_week"
    mean_4_weeks = "mean_4_weeks"


def backtest_metric(forecaster: Forecaster, score: str) -> str:
    """A score (`wape`, `mae`, ...) of a forecaster averaged over the backtest weeks."""
    return f"backtest_{forecaster}_{score}"


def week_metric(forecaster: Forecaster) -> str:
    """The WAPE of a forecaster in each backtest week (MLflow step = the week's index)."""
    return f"week_{forecaster}_wape"


# The promotion gate compares candidates and champion on this (lower is better).
GATE_METRIC = backtest_metric(Forecaster.model, "wape")
# The champion's config backtested on the candidate's weeks, logged with the candidate.
CHAMPION_SAME_WEEKS_METRIC = "champion_wape_same_weeks"

# Logged with every registered forecaster: the monitored features and the out-of-sample
# forecasts of its backtest weeks, which the drift check compares new forecasts with.
DRIFT_REFERENCE_ARTIFACT = "drift_reference.parquet"
