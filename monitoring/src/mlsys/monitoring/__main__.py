"""Command line of the monitoring jobs."""

from datetime import UTC, datetime
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
drift_app = typer.Typer(
    help="Drift checks: each compares what a champion sees now with its reference, stores "
    "the results in the database and MLflow, and says whether to retrain.",
    no_args_is_help=True,
)
app.add_typer(drift_app, name="drift")
# Pushed by the drift jobs: the alert on drift reads it.
DRIFT_DETECTED = job_figure("drift_detected", "1 if the latest drift check called for retraining")
DRIFT_SHARE = job_figure(
    "drift_share", "Share of the monitored columns that drifted (the forecaster's, the ranker's)"
)
NO_ANIMAL_CHANGE = job_figure(
    "no_animal_share_change",
    "Estimated change in the share of new posts without an animal (the classifier's check)",
)
VerdictFile = Annotated[
    Path | None, typer.Option(help="Write `true` or `false` (retrain or not) here, for a workflow.")
]
OutputFile = Annotated[Path | None, typer.Option(help="Write the check as JSON here.")]


@app.callback()
def main() -> None:
    """Monitoring jobs."""


@drift_app.command("forecaster")
@job
def forecaster_drift(
    week: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="The forecast week's Monday (default: latest)."),
    ] = None,
    output: OutputFile = None,
    verdict_file: VerdictFile = None,
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


@drift_app.command("classifier")
@job
def classifier_drift(
    days: Annotated[
        int | None,
        typer.Option(
            min=1, help="The posts checked: those created in the latest DAYS (default: 7)."
        ),
    ] = None,
    reference_days: Annotated[
        int | None,
        typer.Option(
            min=1, help="Against those created in the REFERENCE_DAYS before (default: 28)."
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
            help="The window's end, UTC (default: the latest judged post).",
        ),
    ] = None,
    output: OutputFile = None,
    verdict_file: VerdictFile = None,
) -> None:
    """Check the no-animal classifier for drift: the share of new posts it flags and
    their no-animal probabilities against the posts it judged before. Stores the results
    in the database and MLflow; a drift calls for retraining (`--verdict-file`). Too few
    posts to decide calls for nothing."""
    from mlsys.aianimals.tables import FLAGGED_SHARE_MEASURE, PROBABILITY_MEASURE
    from mlsys.monitoring.classifier import REFERENCE_DAYS, WINDOW_DAYS, check_classifier

    configure_logging()
    try:
        result = check_classifier(
            days or WINDOW_DAYS,
            reference_days or REFERENCE_DAYS,
            until.replace(tzinfo=UTC) if until else None,
        )
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    report(DRIFT_DETECTED, int(result.drifted))
    if output:
        write_report(output, result.report())
    if verdict_file:
        verdict_file.write_text("true" if result.drifted else "false")
    posts = f"{result.current_posts} posts against {result.reference_posts}"
    change = result.no_animal_change()
    if change is None:  # undecided
        typer.echo(f"version {result.model_version}, {posts}: too few to decide; retrain: no")
        return
    report(NO_ANIMAL_CHANGE, change)
    flagged = result.measure(FLAGGED_SHARE_MEASURE)
    probability = result.measure(PROBABILITY_MEASURE)
    typer.echo(
        f"version {result.model_version}, {posts}: flagged {flagged.current:.1%} "
        f"(was {flagged.reference:.1%}, p={flagged.score:.2g}), the share without an animal "
        f"changed by about {100 * change:+.1f} points; probability KS "
        f"p={probability.score:.2g}; "
        f"retrain: {'yes' if result.drifted else 'no'}"
    )


@drift_app.command("ranker")
@job
def ranker_drift(
    days: Annotated[
        int | None,
        typer.Option(min=1, help="The searches checked: those of the latest DAYS (default: 7)."),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"],
            help="The window's end, UTC (default: the latest search).",
        ),
    ] = None,
    output: OutputFile = None,
    verdict_file: VerdictFile = None,
) -> None:
    """Check the search ranker for drift: the features of the results shown in the latest
    searches against those of its test searches, logged with it at training. Stores the
    results in the database and MLflow; a drift calls for retraining (`--verdict-file`).
    Too few searches to decide calls for nothing."""
    from mlsys.monitoring.ranker import WINDOW_DAYS, check_ranker

    configure_logging()
    try:
        result = check_ranker(days or WINDOW_DAYS, until.replace(tzinfo=UTC) if until else None)
    except ValueError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    report(DRIFT_DETECTED, int(result.drifted))
    if output:
        write_report(output, result.report())
    if verdict_file:
        verdict_file.write_text("true" if result.drifted else "false")
    checked = result.window
    searches = f"{checked.searches} searches in the {checked.days} days to {checked.end:%Y-%m-%d}"
    if result.inputs is None:
        typer.echo(f"version {result.model_version}, {searches}: too few to decide; retrain: no")
        return
    report(DRIFT_SHARE, result.inputs.share)
    drifted = [c.column for c in result.inputs.columns if c.drifted]
    typer.echo(
        f"version {result.model_version}, {searches}: {result.inputs.share:.0%} of the "
        f"features drifted ({', '.join(drifted) or 'none'}); "
        f"retrain: {'yes' if result.drifted else 'no'}"
    )


if __name__ == "__main__":
    app()
