"""Command line of AIAnimals moderation: the no-animal classifier."""

from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from mlsys.common.cli import IdleSeconds, photo_sample, write_report
from mlsys.common.logging import configure_logging, get_logger
from mlsys.common.metrics import job
from mlsys.common.serving import UVICORN_OPTIONS
from mlsys.violation_detection.experiment import TrainingOptions

log = get_logger(__name__)
app = typer.Typer(
    help="AIAnimals moderation: train the no-animal classifier (Fisher vectors and a "
    "logistic regression) on the dataset's photos beside a baseline, choose its threshold "
    "on validation, "
    "report it on the fixed test set, track it in MLflow and promote the champion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
DEFAULT_IMAGES = Path("dataset/images")
DEFAULT_FRESH_IMAGES = Path("dataset/openmoji")


@app.callback()
def main() -> None:
    """AIAnimals moderation (see the commands below)."""


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="no-animal classifier (positive class: no animal)")
    for column in ("model / part", "ROC AUC", "precision", "recall", "threshold", "photos"):
        table.add_column(column, justify="left" if column == "model / part" else "right")
    label = {"test": "classifier, test", "fresh_test": "classifier, fresh test",
             "validation": "classifier, validation", "baseline": "baseline, test",
             "baseline_fresh_test": "baseline, fresh test"}  # fmt: skip
    for name in label:
        values = report[name]
        table.add_row(
            label[name],
            *(f"{values[k]:.4f}" for k in ("roc_auc", "precision", "recall", "threshold")),
            str(values["photos"]),
        )
    Console().print(table)


ImagesOption = Annotated[
    Path, typer.Option(help="The photos: a folder with manifest.csv (file, label, ...).")
]
FreshImagesOption = Annotated[
    Path,
    typer.Option(
        help="The fresh test set: drawings of another source, labelled by a written rule "
        "(dataset/openmoji/README.md); scored once, at the end, beside the test set."
    ),
]
OutputOption = Annotated[
    Path | None, typer.Option(help="Write the report (test, validation, baseline) as JSON.")
]
TargetPrecisionOption = Annotated[
    float,
    typer.Option(
        min=0.5, max=1.0, help="Precision of 'no animal' the threshold must reach on validation."
    ),
]
ConfidenceOption = Annotated[
    float,
    typer.Option(
        min=0.5,
        max=0.999,
        help="Confidence with which validation must show the target precision (a "
        "Clopper-Pearson bound): the few animal photos of validation make the lowest "
        "threshold that merely reaches it miss it on new photos half the time.",
    ),
]
ComponentsOption = Annotated[
    int,
    typer.Option(min=1, help="Gaussians of the Fisher vectors' mixture, per patch size."),
]
SeedOption = Annotated[int, typer.Option(help="Seed of the split and of training.")]
LimitOption = Annotated[
    int | None,
    typer.Option(
        parser=photo_sample(minimum=20),
        metavar="COUNT|all",
        help="Use a stratified sample of this many photos (quick runs), or all of them.",
    ),
]
PromoteOption = Annotated[
    bool, typer.Option(help="Give the new version the champion alias if it beats the champion.")
]


@app.command()
def train(
    images: ImagesOption = DEFAULT_IMAGES,
    fresh_images: FreshImagesOption = DEFAULT_FRESH_IMAGES,
    output: OutputOption = None,
    target_precision: TargetPrecisionOption = TrainingOptions.target_precision,
    confidence: ConfidenceOption = TrainingOptions.confidence,
    components: ComponentsOption = TrainingOptions.components,
    seed: SeedOption = TrainingOptions.seed,
    limit: LimitOption = TrainingOptions.limit,
    promote: PromoteOption = TrainingOptions.promote,
) -> None:
    """Train and evaluate the classifier (a logistic regression on Fisher vectors of dense
    SIFT descriptors of the photo cropped to its drawing) on a stratified train /
    validation / test split fixed by the seed: fitted on the training photos, its threshold
    the lowest at which validation shows the target precision with the confidence (what
    validation is used for), the test set scored once, for the report, as is the baseline
    (gradient boosting on colour and gradient histograms)."""
    configure_logging()
    options = TrainingOptions(images, fresh_images, target_precision, confidence, components,
                              seed, limit, promote)  # fmt: skip
    _train(options, output)


@app.command()
@job
def retrain(
    images: ImagesOption = DEFAULT_IMAGES,
    fresh_images: FreshImagesOption = DEFAULT_FRESH_IMAGES,
    output: OutputOption = None,
    target_precision: TargetPrecisionOption = TrainingOptions.target_precision,
    confidence: ConfidenceOption = TrainingOptions.confidence,
    components: ComponentsOption = TrainingOptions.components,
    seed: SeedOption = TrainingOptions.seed,
    limit: LimitOption = TrainingOptions.limit,
    promote: PromoteOption = TrainingOptions.promote,
) -> None:
    """Train as `train` does, with the moderators' decisions added to the training photos
    (approved: no animal; reversed: an animal). They never enter validation or test, and
    one that shows a validation or test photo is left out; the split is the same as
    `train`'s, so the new version and the champion are compared on the same test photos,
    and it is promoted only if its ROC AUC there is higher."""
    from mlsys.aianimals.database import get_engine, upgrade_or_wait
    from mlsys.aianimals.storage import photo_store
    from mlsys.violation_detection.dataset import reviewed_photos
    from mlsys.violation_detection.review import labels

    configure_logging()
    engine = get_engine()
    upgrade_or_wait(engine)
    reviewed = reviewed_photos(labels(engine), photo_store())
    typer.echo(f"labels from reviews: {len(reviewed)} ({int(reviewed.labels.sum())} no animal)")
    options = TrainingOptions(images, fresh_images, target_precision, confidence, components,
                              seed, limit, promote)  # fmt: skip
    _train(options, output, reviewed=reviewed)


def _train(options: TrainingOptions, output: Path | None, reviewed=None) -> None:
    """Run the stage and print what it found."""
    from mlsys.violation_detection.experiment import train_and_register

    outcome = train_and_register(options, reviewed)
    if outcome.reviewed_left_out:
        typer.echo(
            f"left out {outcome.reviewed_left_out} reviewed photos of the test sets or validation"
        )
    report = outcome.report
    print_report(report)
    typer.echo(f"trained in {outcome.seconds:.0f} s")
    version = outcome.version
    typer.echo(f"registered version {version} (threshold {outcome.threshold:.4f})")
    if options.promote:
        against = (
            "no champion yet"
            if outcome.champion_auc is None
            else f"champion's test ROC AUC {outcome.champion_auc:.4f} on the same photos"
        )
        typer.echo(
            f"version {version}: test ROC AUC {report['test']['roc_auc']:.4f}, {against}: "
            + ("promoted to champion" if outcome.promoted else "not promoted")
        )
    if output is not None:
        write_report(output, report)


@app.command()
def select(
    images: ImagesOption = DEFAULT_IMAGES,
    seed: SeedOption = 0,
    limit: LimitOption = None,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds.")] = 5,
) -> None:
    """Compare the candidate models by cross-validation on the training photos alone (the
    split `train` makes): the regression's penalty, the mixture's size, and the Fisher
    vectors blended with the gradient-boosting baseline. How the defaults were chosen;
    validation and test are not read."""
    from mlsys.aianimals.photos import load_photos, split
    from mlsys.violation_detection.select import cross_validate
    from mlsys.violation_detection.train import ClassifierParams

    configure_logging()
    photos = load_photos(images, limit=limit, seed=seed)
    train_part = split(photos.labels, seed).train
    scores = cross_validate(
        photos.images[train_part], photos.labels[train_part], ClassifierParams(seed=seed), folds
    )
    for name, auc in sorted(scores.items(), key=lambda item: -item[1]):
        typer.echo(f"{auc:.4f}  {name}")


@app.command()
def consume(
    idle_seconds: IdleSeconds = None,
) -> None:
    """Consume the violation-detection queue (RabbitMQ, or the outbox in the local
    profile): each new post's photo is judged by the classifier server
    (VIOLATION_DETECTION_URL); a violation row is written per post and model version, and
    a post judged a violation is deactivated, which takes it out of search."""
    from mlsys.aianimals.messages import Queue, run_consumer
    from mlsys.violation_detection.detect import Classifier, detect_violations

    def handler(engine):
        classifier = Classifier.from_settings()
        classifier.wait_until_ready()
        return partial(detect_violations, engine, classifier)

    configure_logging()
    typer.echo(run_consumer(Queue.violation_detection, handler, idle_seconds))


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
        **UVICORN_OPTIONS,
    )


@app.command()
def portal(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8502,
) -> None:
    """Serve the review portal (Streamlit): moderators log in with their AIAnimals
    password, see the violations with filters and a per-day chart, and approve or reverse
    them in the review queue; a reversal puts the post back in search, and every decision
    becomes a label for `retrain`. Make a user a moderator with
    `python -m mlsys.batch grant-role HANDLE moderator`."""
    from mlsys.aianimals.database import upgrade_or_wait
    from mlsys.common.streamlit_apps import serve_streamlit

    configure_logging()
    upgrade_or_wait()
    typer.echo(f"review portal: http://{host}:{port}")
    serve_streamlit(Path(__file__).with_name("portal.py"), host, port)


if __name__ == "__main__":
    app()
