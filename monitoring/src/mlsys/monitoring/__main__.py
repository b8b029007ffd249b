"""Command line of the monitoring jobs."""

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from mlsys.common.cli import write_report
from mlsys.common.logging import configure_logging
from mlsys.common.metrics import job, job_figure, report

app = typer.Typer(
    help="Monitoring: whether what a model sees now still looks like what it learned from.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Pushed by the drift job: the alert on drift reads it.
DRIFT_DETECTED = job_figure("drift_detected", "1 if the latest drift check called for retraining")
DRIFT_SHARE = job_figure("drift_share", "Share of the monitored columns that drifted")


@app.callback()
def main() -> None:
    """Monitoring jobs."""


@app.command()
@job
def drift(
    week: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="The forecast week's Monday (default: latest)."),
    ] = None,
    output: Annotated[Path | None, typer.Option(help="Write the check as JSON here.")] = None,
    verdict_file: Annotated[
        Path | None,
        typer.Option(help="Write `true` or `false` (retrain or not) here, for a workflow."),
    ] = None,
) -> None:
    """Check the forecasting champion for drift: its latest week's features and forecasts
    against its training reference, and the realised error of past forecasts. Stores the
    results in the database and MLflow; a drift calls for retraining (`--verdict-file`)."""
    from mlsys.monitoring.forecaster import check_forecaster

    configure_logging()
    try:
        result = check_forecaster(week.date() if week else None)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    report(DRIFT_DETECTED, int(result.drifted))
    report(DRIFT_SHARE, result.inputs.share)
    summary = result.report()
    if output:
        write_report(output, summary)
    if verdict_file:
        verdict_file.write_text("true" if result.drifted else "false")
    realised = summary["realised"]
    typer.echo(
        f"version {result.model_version}, week of {result.week}: "
        f"{result.inputs.share:.0%} of the inputs drifted; realised WAPE "
        + (f"{realised['wape']:.4f} (limit {realised['threshold']:.4f}, week of "
           f"{realised['week']})" if realised else "not known yet")
        + f"; retrain: {'yes' if result.drifted else 'no'}"
    )  # fmt: skip


if __name__ == "__main__":
    app()
