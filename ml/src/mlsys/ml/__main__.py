"""Command line of the demand-forecasting job. Extra arguments are Hydra overrides."""

from pathlib import Path
from typing import Annotated

import typer

from mlsys.common.cli import write_report
from mlsys.common.logging import configure_logging
from mlsys.common.metrics import job, report, report_items
from mlsys.common.tracking import CHAMPION

app = typer.Typer(
    help="Beverage demand forecasting: backtest, train (with the promotion gate) and predict. "
    "Experiment settings live in mlsys/ml/conf/config.yaml; change them with Hydra overrides "
    "such as `model.params.learning_rate=0.05`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
Overrides = Annotated[
    list[str] | None, typer.Argument(help="Hydra overrides, e.g. model.num_boost_round=300.")
]


def load_config(overrides: list[str] | None):
    from hydra import compose, initialize_config_module

    with initialize_config_module("mlsys.ml.conf", version_base=None):
        return compose("config", overrides=overrides or [])


def print_scores(scores: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="backtest (means over the weeks)")
    for column in ("forecaster", "wape", "mae", "rmse", "mape"):
        table.add_column(column, justify="right" if column != "forecaster" else "left")
    for name, values in scores.items():
        if name != "weeks":
            table.add_row(name, *(f"{values[key]:.4f}" for key in ("wape", "mae", "rmse", "mape")))
    Console().print(table)


@app.command()
@job
def backtest(
    from_week: Annotated[
        str, typer.Option("--from", help="First target week, ISO year-week like 2021-35.")
    ],
    to_week: Annotated[str, typer.Option("--to", help="Last target week, e.g. 2021-51.")],
    output: Annotated[Path | None, typer.Option(help="Write the scores as JSON here.")] = None,
    overrides: Overrides = None,
) -> None:
    """Rolling-origin backtest: each target week's model learns only from earlier weeks.

    Prints MAE, RMSE, WAPE and MAPE of the model and of the naive baselines (last week;
    mean of the last 4 weeks) and tracks the run in MLflow.
    """
    import pandas as pd

    from mlsys.beverage.database import get_engine
    from mlsys.ml.backtest import backtest as run_backtest
    from mlsys.ml.backtest import iso_week, store_forecasts
    from mlsys.ml.data import fingerprint, load_inputs
    from mlsys.ml.features import weekly_frame
    from mlsys.ml.model import training_rows
    from mlsys.ml.tracking import configure, log_forecasting_run

    configure_logging()
    cfg = load_config(overrides)
    configure()
    engine = get_engine()
    history, prices = load_inputs(engine, cfg.data.include_generated)
    weeks = list(pd.date_range(iso_week(from_week), iso_week(to_week), freq="7D"))
    frame = weekly_frame(history, prices, cfg.features)
    scores, forecasts, booster = run_backtest(frame, weeks, cfg)
    run_id, _ = log_forecasting_run(
        cfg=cfg,
        scores=scores,
        booster=booster,
        sample=training_rows(frame, weeks[-1], cfg),
        tags={
            "job": "backtest",
            "data_fingerprint": fingerprint(history),
            "evaluation_weeks": f"{from_week}..{to_week}",
        },
    )
    store_forecasts(engine, run_id, forecasts)
    print_scores(scores)
    if output:
        write_report(output, scores)
        typer.echo(f"wrote {output}")


@app.command()
@job
def validate(overrides: Overrides = None) -> None:
    """Check the registered sales before training: enough complete weeks, none missing,
    every store-item series present in the latest week. Exits 1 listing the problems."""
    from mlsys.ml.validate import validate_data

    configure_logging()
    problems = validate_data(load_config(overrides))
    for problem in problems:
        typer.echo(f"problem: {problem}", err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo("data ok")


@app.command()
@job
def train(
    overrides: Overrides = None,
    promote: Annotated[
        bool, typer.Option(help="Run the promotion gate right after registering.")
    ] = True,
    version_file: Annotated[
        Path | None,
        typer.Option(
            help="Write the registered version here: how a workflow hands the version it "
            "trained to its promotion gate (`promote --version`)."
        ),
    ] = None,
) -> None:
    """Backtest the latest weeks, fit on all complete weeks, register the model in MLflow and
    give it the `champion` alias only if it beats the current champion on the same weeks."""
    from mlsys.ml.train import train as run

    configure_logging()
    result = run(load_config(overrides), promote=promote)
    if version_file is not None:
        version_file.write_text(str(result.version))
    if not promote:
        verdict = "not judged (promote --version judges it)"
    else:
        verdict = "promoted to champion" if result.promoted else "not promoted"
    typer.echo(f"registered version {result.version} (backtest WAPE {result.wape:.4f}): {verdict}")


@app.command()
@job
def promote(
    version: Annotated[
        int | None, typer.Option(help="Registered version to judge; default: the latest.")
    ] = None,
) -> None:
    """The promotion gate: the version becomes `champion` only if its backtest WAPE beats the
    champion's config backtested on the same weeks."""
    from mlsys.ml.train import gate

    configure_logging()
    result = gate(version)
    verdict = "promoted to champion" if result.promoted else "not promoted"
    typer.echo(f"version {result.version} (backtest WAPE {result.wape:.4f}): {verdict}")


@app.command()
@job
def predict(
    week: Annotated[
        str | None,
        typer.Option(
            help="Target ISO week like 2022-01; default: the week after the latest sales."
        ),
    ] = None,
    alias: Annotated[str, typer.Option(help="Registered-model alias to predict with.")] = CHAMPION,
) -> None:
    """Forecast one week's sales for every store and item with the champion and store them."""
    from datetime import timedelta

    from mlsys.ml.backtest import iso_week
    from mlsys.ml.predict import FORECAST_WEEK_END
    from mlsys.ml.predict import predict as run

    configure_logging()
    result = run(iso_week(week) if week else None, alias=alias)
    report_items(result.rows)
    report(FORECAST_WEEK_END, (iso_week(result.week) + timedelta(days=7)).timestamp())
    typer.echo(
        f"week {result.week}: {result.rows} predictions by version {result.version} "
        f"({result.written} written)"
    )


if __name__ == "__main__":
    app()
