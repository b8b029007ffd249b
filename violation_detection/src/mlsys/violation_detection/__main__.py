"""Command line of AIAnimals moderation: the no-animal classifier."""

import json
from pathlib import Path
from typing import Annotated

import typer

from mlsys.common.logging import configure_logging, get_logger

log = get_logger(__name__)
app = typer.Typer(
    help="AIAnimals moderation: train the no-animal classifier (a Keras CNN) on the "
    "dataset's photos beside a classical baseline, choose its threshold on validation, "
    "report it on the fixed test set, track it in MLflow and promote the champion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
DEFAULT_IMAGES = Path("dataset/images")


@app.callback()
def main() -> None:
    """AIAnimals moderation (see the commands below)."""


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="no-animal classifier (positive class: no animal)")
    for column in ("model / part", "ROC AUC", "precision", "recall", "threshold", "photos"):
        table.add_column(column, justify="left" if column == "model / part" else "right")
    for name in ("test", "validation", "baseline"):
        values = report[name]
        label = {"test": "CNN, test", "validation": "CNN, validation", "baseline": "baseline, test"}
        table.add_row(
            label[name],
            *(f"{values[k]:.4f}" for k in ("roc_auc", "precision", "recall", "threshold")),
            str(values["photos"]),
        )
    Console().print(table)


@app.command()
def train(
    images: Annotated[
        Path, typer.Option(help="The photos: a folder with manifest.csv (file, label, ...).")
    ] = DEFAULT_IMAGES,
    output: Annotated[
        Path | None, typer.Option(help="Write the report (test, validation, baseline) as JSON.")
    ] = None,
    target_precision: Annotated[
        float,
        typer.Option(
            min=0.5,
            max=1.0,
            help="Precision of 'no animal' the threshold must reach on validation.",
        ),
    ] = 0.95,
    epochs: Annotated[
        int, typer.Option(min=1, help="Training epochs (the best on validation is kept).")
    ] = 50,
    resolution: Annotated[
        int, typer.Option(min=16, max=128, help="Pixels the CNN sees per side.")
    ] = 64,
    width: Annotated[int, typer.Option(min=2, help="Filters of the CNN's first block.")] = 24,
    seed: Annotated[int, typer.Option(help="Seed of the split and of training.")] = 0,
    limit: Annotated[
        int | None,
        typer.Option(min=20, help="Use a stratified sample of this many photos (quick runs)."),
    ] = None,
    promote: Annotated[
        bool, typer.Option(help="Give the new version the champion alias if it beats the champion.")
    ] = True,
) -> None:
    """Train and evaluate the classifier: stratified train / validation / test split fixed
    by the seed; the CNN keeps its best epoch on validation; its threshold is the lowest
    reaching the target precision on validation; the test set is scored once, for the
    report, as is the baseline (gradient boosting on colour and gradient histograms)."""
    from mlsys.violation_detection.baseline import baseline_scores, train_baseline
    from mlsys.violation_detection.dataset import fingerprint, load_photos, split
    from mlsys.violation_detection.evaluate import curves, summary, threshold_for_precision
    from mlsys.violation_detection.tracking import gate, log_run
    from mlsys.violation_detection.train import CnnParams, cnn_scores, train_cnn

    configure_logging()
    photos = load_photos(images, limit=limit, seed=seed)
    parts = split(photos.labels, seed)
    x, y = photos.images, photos.labels
    train_x, train_y = x[parts.train], y[parts.train]
    valid_x, valid_y = x[parts.validation], y[parts.validation]
    test_x, test_y = x[parts.test], y[parts.test]
    log.info(
        "photos=%d (no animal %.1f%%) train=%d validation=%d test=%d",
        len(photos), 100 * y.mean(), len(train_y), len(valid_y), len(test_y),
    )  # fmt: skip
    params = CnnParams(resolution=resolution, width=width, epochs=epochs, seed=seed)

    def progress(epoch: int, record: dict) -> None:
        log.info(
            "epoch %d/%d loss=%.4f val_auc=%.4f",
            epoch + 1,
            epochs,
            record.get("loss", float("nan")),
            record["val_auc"],
        )

    trained = train_cnn(train_x, train_y, valid_x, valid_y, params, progress)
    valid_scores = cnn_scores(trained.model, valid_x)
    threshold = threshold_for_precision(valid_y, valid_scores, target_precision)
    test_scores = cnn_scores(trained.model, test_x)  # the one look at the test set
    baseline = train_baseline(train_x, train_y, seed)
    baseline_threshold = threshold_for_precision(
        valid_y, baseline_scores(baseline, valid_x), target_precision
    )
    tested = summary(test_y, test_scores, threshold)
    report = {
        "test": tested,
        "validation": summary(valid_y, valid_scores, threshold),
        "baseline": summary(test_y, baseline_scores(baseline, test_x), baseline_threshold),
        "target_precision": target_precision,
        "best_epoch": trained.best_epoch + 1,
        "train_seconds": round(trained.seconds, 1),
    }
    print_report(report)
    typer.echo(
        f"trained in {trained.seconds:.0f} s; best epoch {trained.best_epoch + 1} of {epochs}"
    )
    extra = {"target_precision": target_precision, "photos": len(photos), "train": len(train_y),
             "validation": len(valid_y), "test": len(test_y), "limit": limit}  # fmt: skip
    _, version = log_run(
        trained=trained,
        params=params,
        report=report,
        curves={"test": curves(test_y, test_scores), "validation": curves(valid_y, valid_scores)},
        fingerprint=fingerprint(photos),
        extra=extra,
    )
    typer.echo(f"registered version {version} (threshold {threshold:.4f})")
    if promote:
        gate(version, tested["roc_auc"], test_x, test_y)
    if output is not None:
        output.write_text(json.dumps(report, indent=2))


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
) -> None:
    """Serve the champion classifier: POST /v1/predict (one photo or a batch), /metrics,
    /health and /health/ready; the champion is reloaded when its alias moves."""
    import uvicorn

    configure_logging()
    typer.echo(f"no-animal classifier: http://{host}:{port}/docs")
    uvicorn.run(
        "mlsys.violation_detection.serve:create_app",
        factory=True,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
    )


if __name__ == "__main__":
    app()
