"""Data checks the workflow runs before training (the data tests of the pipeline)."""

from omegaconf import DictConfig

from mlsys.beverage.database import get_engine
from mlsys.ml.backtest import week_label
from mlsys.ml.data import load_history
from mlsys.ml.features import WEEK


def validate_data(cfg: DictConfig) -> list[str]:
    """Problems that would make training or its evaluation meaningless; empty if none."""
    history = load_history(get_engine(), include_generated=cfg.data.include_generated)
    if history.empty:
        return ["no sales registered"]
    problems = []
    weeks = history.complete_weeks()
    needed = cfg.evaluation.weeks + cfg.features.min_history_weeks + 1
    if len(weeks) < needed:
        problems.append(f"{len(weeks)} complete weeks of sales, training needs at least {needed}")
    missing = [w for w in weeks[:-1] if w + WEEK not in set(weeks)]
    problems += [f"week after {week_label(w)} is missing or incomplete" for w in missing]
    if weeks:
        series = history.series_weeks
        latest = series[series["week_start"] == weeks[-1]]
        expected = series[["store", "item"]].drop_duplicates()
        if len(latest) < len(expected):
            problems.append(
                f"week {week_label(weeks[-1])} has sales for {len(latest)} of {len(expected)} "
                "store-item series"
            )
        short = latest[latest["days"] < 7]
        if len(short):
            problems.append(f"week {week_label(weeks[-1])}: {len(short)} series miss days")
    return problems
