"""Command line of the AIAnimals search-ranking jobs."""

from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from mlsys.aianimals.settings import HIDDEN_QUALITY_FILE, SYNONYM_QUERIES_FILE, generated_dir
from mlsys.common.cli import IdleSeconds, photo_sample, write_report
from mlsys.common.logging import configure_logging
from mlsys.common.metrics import job

app = typer.Typer(
    help="AIAnimals search ranking: learn to rank posts from the search access logs "
    "(impressions, selects, long views, likes) with point-in-time features, evaluate "
    "against baselines, track in MLflow and promote the champion the API serves.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main() -> None:
    """AIAnimals search ranking jobs (see the commands below)."""


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for table_name, title in (
        ("hidden_quality", "held-out searches, against the hidden quality"),
        ("logged_clicks", "held-out searches, against the logged actions"),
    ):
        table = Table(title=title)
        for column in ("ranker", "ndcg@10", "mrr"):
            table.add_column(column, justify="left" if column == "ranker" else "right")
        for name, values in report.get(table_name, {}).items():
            table.add_row(name, *(f"{values.get(k, float('nan')):.4f}" for k in ("ndcg@10", "mrr")))
        console.print(table)
    if "chosen" in report:
        console.print(f"served: the {report['chosen']} (best NDCG@10 on the validation searches)")
    if "gap_closed" in report:
        console.print(
            f"gap to the ideal order closed over sort-by-likes: {report['gap_closed']:.3f}"
        )


@app.command()
@job
def features() -> None:
    """Compute every post's online ranking features as of now (likes, impressions,
    position-weighted examinations, selects, long views and likes from the access logs,
    the owner's posts) and write them to the post_activity table the API reads."""
    from mlsys.aianimals.database import get_engine, upgrade_or_wait
    from mlsys.aianimals.ranking_data import read_ranking_data
    from mlsys.search.features import current_activity, now, write_activity

    configure_logging()
    engine = get_engine()
    upgrade_or_wait(engine)
    frame = current_activity(read_ranking_data(engine, min_searches=0), now())
    changed = write_activity(engine, frame)
    typer.echo(f"post_activity: {len(frame)} posts, {changed} rows written")


@app.command("features-consumer")
def features_consumer(
    idle_seconds: IdleSeconds = None,
) -> None:
    """Consume the ranking-features queue (RabbitMQ, or the outbox in the local profile):
    a new post gets its online features and its owner's post count is refreshed."""
    from mlsys.aianimals.activity import refresh_activity
    from mlsys.aianimals.messages import Queue, run_consumer

    configure_logging()
    typer.echo(
        run_consumer(
            Queue.ranking_features, lambda engine: partial(refresh_activity, engine), idle_seconds
        )
    )


def _logged_data(until: datetime | None = None):
    """The ranking data from the database (at head): the searches logged before `until`
    (default: all), or exit 1 when too few."""
    from mlsys.aianimals.database import get_engine, upgrade_or_wait
    from mlsys.aianimals.ranking_data import NotEnoughData, read_ranking_data

    engine = get_engine()
    upgrade_or_wait(engine)
    try:
        return read_ranking_data(engine, until=until)
    except NotEnoughData as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error


@app.command("train-ranker")
@job
def train_ranker(
    output: Annotated[Path | None, typer.Option(help="Write both tables here as JSON.")] = None,
    hidden_quality: Annotated[
        Path | None,
        typer.Option(
            help="The generator's hidden_quality.csv: evaluation only, never a feature or a "
            "label. Default: MLSYS_HOME/aianimals/hidden_quality.csv where it exists."
        ),
    ] = None,
    promote: Annotated[
        bool, typer.Option(help="Give the new version the champion alias if it beats the champion.")
    ] = True,
    version_file: Annotated[
        Path | None, typer.Option(help="Write the registered model version here.")
    ] = None,
    num_boost_round: Annotated[
        int,
        typer.Option(
            min=1,
            help="At most this many trees (the number kept is chosen on the validation searches).",
        ),
    ] = 200,
    seed: Annotated[int, typer.Option(help="LightGBM's seed.")] = 0,
    until: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Learn from the searches logged before this day (UTC; default: all of them).",
        ),
    ] = None,
) -> None:
    """Train the LightGBM lambdarank ranker and the regressor on the earliest logged
    searches, evaluate both and the baselines (likes, text_score, recency) on the latest
    ones, register the ranker as aianimals_search_ranker and gate it against the champion
    on NDCG@10 of the logged actions."""
    import pandas as pd

    from mlsys.aianimals.ranking import RANKER_MODEL_NAME
    from mlsys.search.train import RankerParams
    from mlsys.search.train_ranker import train_ranker as run

    configure_logging()
    quality_path = hidden_quality or generated_dir() / HIDDEN_QUALITY_FILE
    if hidden_quality is not None and not hidden_quality.exists():
        typer.echo(f"error: {hidden_quality} does not exist", err=True)
        raise typer.Exit(2)
    quality = (
        pd.read_csv(quality_path).set_index("animal_id")["quality"]
        if quality_path.exists()
        else None
    )
    params = RankerParams(num_boost_round=num_boost_round, seed=seed)
    from mlsys.aianimals.ranking_data import NotEnoughData

    data = _logged_data(until.replace(tzinfo=UTC) if until else None)
    try:
        outcome = run(data, params, quality, promote)
    except NotEnoughData as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    print_report(outcome.report)
    if output:
        write_report(output, outcome.report)
    if version_file:
        version_file.write_text(str(outcome.version))
    typer.echo(f"registered {RANKER_MODEL_NAME} version {outcome.version}")


@app.command("promote-ranker")
@job
def promote_ranker(
    version: Annotated[int, typer.Option(help="The registered version to judge.")],
) -> None:
    """The champion gate alone (the CronWorkflow's step after `train-ranker --no-promote
    --version-file`): the version becomes the champion only if it beats the champion on
    the latest logged searches, both scored now. Exits 0 either way."""
    from mlsys.search.gate import gate

    configure_logging()
    data = _logged_data()
    promoted = gate(data, version)
    typer.echo(f"version {version}: {'champion' if promoted else 'not promoted'}")


@app.command()
def simulate(
    api: Annotated[
        str, typer.Option(help="Where the app's requests go: the A/B test proxy, or the API.")
    ] = "http://127.0.0.1:8080",
    hidden_quality: Annotated[
        Path | None,
        typer.Option(
            help="The generator's hidden_quality.csv: the click model's truth. Default: "
            "MLSYS_HOME/aianimals/hidden_quality.csv."
        ),
    ] = None,
    searches: Annotated[int, typer.Option(min=1, help="Search sessions to play.")] = 2000,
    users: Annotated[int, typer.Option(min=1, help="Distinct users who search.")] = 500,
    concurrency: Annotated[int, typer.Option(min=1, help="Sessions at once.")] = 8,
    seed: Annotated[int, typer.Option(help="The same seed plays the same sessions.")] = 0,
    dataset_dir: Annotated[Path, typer.Option(help="The dataset's aianimals/ folder.")] = Path(
        "dataset/aianimals"
    ),
) -> None:
    """Play users through the app's API with the generator's click model: log in, search,
    send impressions, selects, long views and likes as the app does (development
    passwords). Run it against the A/B test proxy, then `python -m mlsys.ab_test_proxy
    report`."""
    import logging

    import pandas as pd

    from mlsys.search.simulate import SimulatedUsers

    configure_logging()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    quality_path = hidden_quality or generated_dir() / HIDDEN_QUALITY_FILE
    quality = pd.read_csv(quality_path).set_index("animal_id")["quality"]
    players = SimulatedUsers(api, quality, dataset_dir, users, seed)
    stats = players.run(searches, concurrency)
    typer.echo(
        f"searches: {stats.searches}, shown: {stats.shown}, selects: {stats.selects}, "
        f"likes: {stats.likes}, failures: {stats.failures}, by variant: {stats.variants}"
    )
    if stats.failures:
        raise typer.Exit(1)


@app.command("build-image-index")
@job
def build_image_index(
    output: Annotated[Path | None, typer.Option(help="Write the report here as JSON.")] = None,
    images: Annotated[
        Path, typer.Option(help="The labelled photos: a folder with manifest.csv.")
    ] = Path("dataset/images"),
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs of the embedding.")] = 30,
    resolution: Annotated[
        int, typer.Option(min=16, help="The embedding model's input size in pixels.")
    ] = 64,
    width: Annotated[int, typer.Option(min=2, help="Filters of its first block.")] = 16,
    limit: Annotated[
        int | None,
        typer.Option(
            parser=photo_sample(minimum=40),
            metavar="COUNT|all",
            help="Use a stratified sample of this many photos, or all of them.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="The split's and the training's seed.")] = 0,
    promote: Annotated[
        bool,
        typer.Option(
            help="Embed every post and make the new version the champion (what the API "
            "serves) if it beats the champion on the test photos."
        ),
    ] = True,
) -> None:
    """Train the image embedding (a Keras CNN, from the shipped photos only), judge it,
    register it as aianimals_image_embedding, and when it beats the champion embed every
    post's photo with it (post_embeddings: the index the API builds with faiss HNSW) and
    make it the champion; the API then serves `POST /v0/animal/search/similar` from it
    and the image-index consumer embeds new posts with it.

    The report (JSON with --output): the index's recall@10 against exact search over every
    photo, and for the test photos (never trained on) how often their 10 nearest test
    photos share their label (animal / no animal) and their subcategory, beside chance."""
    from mlsys.aianimals.image_index import IMAGE_EMBEDDING_MODEL_NAME
    from mlsys.search.build_image_index import (
        ImageIndexOptions,
        ImageIndexOutcome,
        build_image_index,
    )

    configure_logging()
    options = ImageIndexOptions(images, epochs, resolution, width, limit, seed, promote)

    def registered(outcome: ImageIndexOutcome) -> None:
        report, chance = outcome.report, outcome.report["chance"]
        test = report["photos"]["test"]
        typer.echo(
            f"recall@10 (index vs exact, {report['photos']['indexed']} photos) "
            f"{report['recall@10']:.4f}\n"
            f"precision@10 on the {test} test photos: label "
            f"{report['precision@10_label']:.3f} (chance {chance['label']:.3f}), "
            f"subcategory {report['precision@10_subcategory']:.3f} "
            f"(chance {chance['subcategory']:.3f})\n"
            f"trained in {report['train_seconds']:.0f} s; best epoch {report['best_epoch']} "
            f"of {epochs}\n"
            f"registered {IMAGE_EMBEDDING_MODEL_NAME} version {outcome.version}"
        )
        if output is not None:
            write_report(output, report)

    outcome = build_image_index(options, registered)
    if not promote:
        return
    if outcome.champion_precision is not None:
        typer.echo(
            f"the champion on the same test photos: subcategory {outcome.champion_precision:.3f}"
        )
    if not outcome.promoted:
        typer.echo(f"version {outcome.version}: not promoted (the champion stays)")
        return
    skipped = outcome.posts_skipped
    typer.echo(
        f"version {outcome.version}: champion; posts embedded: {outcome.posts_embedded}"
        + (f", {skipped} without a readable photo" if skipped else "")
    )


@app.command("similar-words")
@job
def similar_words(
    output: Annotated[Path | None, typer.Option(help="Write the report here as JSON.")] = None,
    synonym_queries: Annotated[
        Path | None,
        typer.Option(
            help="The generator's synonym_queries.json: held-out queries with what they mean, "
            "for the report only. Default: MLSYS_HOME/aianimals/synonym_queries.json where it "
            "exists."
        ),
    ] = None,
    min_similarity: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Keep a similar word at least this similar.")
    ] = 0.15,
    top_k: Annotated[int, typer.Option(min=1, help="At most this many similar words a word.")] = 3,
    promote: Annotated[
        bool,
        typer.Option(
            help="Make the new version the champion (what the API applies to searches) if it "
            "finds more of the latest searches' selected posts than the champion does."
        ),
    ] = True,
) -> None:
    """Learn similar words (nicknames, other spellings: にゃんこ for 猫, ポメ for ポメラニアン)
    from the posts' names and descriptions and from the logged searches and the posts
    selected in them, register them as aianimals_similar_words, and make them the champion
    if they beat it: the API then adds them to search phrases, weighing less than the words
    typed.

    Learned from the searches before the test period (the latest 20%) and the posts made
    before it. The report (JSON with --output): on the local search engine, with and
    without the similar words, the share of the test searches' selected posts found, and
    for the held-out synonym queries their recall and precision@10 against what they mean."""
    from mlsys.aianimals.similar_words import SIMILAR_WORDS_MODEL_NAME
    from mlsys.search.learn_similar_words import SimilarWordsOptions, learn_similar_words
    from mlsys.search.similar_words import NotEnoughSearches

    configure_logging()
    if synonym_queries is not None and not synonym_queries.exists():
        typer.echo(f"error: {synonym_queries} does not exist", err=True)
        raise typer.Exit(2)
    queries = synonym_queries or generated_dir() / SYNONYM_QUERIES_FILE
    options = SimilarWordsOptions(queries, min_similarity, top_k, promote)
    try:
        outcome = learn_similar_words(options)
    except NotEnoughSearches as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    report = outcome.report
    learned, logged = report["learned"], report["logged"]
    typer.echo(
        f"learned similar words for {learned['words_with_similar']} of "
        f"{learned['vocabulary']} words in {report['learn_seconds']:.1f} s\n"
        f"the latest {logged['typed']['searches']} searches' selected posts found: "
        f"{logged['typed']['recall']:.3f} as typed, {logged['expanded']['recall']:.3f} "
        "with similar words"
    )
    if "synonym_queries" in report:
        held = report["synonym_queries"]
        typer.echo(
            f"{held['queries']} held-out synonym queries: recall "
            f"{held['typed']['recall']:.3f} -> {held['expanded']['recall']:.3f}, "
            f"precision@10 {held['typed']['precision@10']:.3f} -> "
            f"{held['expanded']['precision@10']:.3f}"
        )
    typer.echo(f"registered {SIMILAR_WORDS_MODEL_NAME} version {outcome.version}")
    if output is not None:
        write_report(output, report)
    if not promote:
        return
    if outcome.champion_recall is not None:
        typer.echo(f"the champion on the same searches: {outcome.champion_recall:.3f}")
    verdict = outcome.verdict
    assert verdict is not None  # judged: promote was asked
    if not verdict.beats:
        typer.echo(f"version {outcome.version}: not promoted ({verdict.candidate:.3f} <= "
                   f"{verdict.reference:.3f})")  # fmt: skip
        return
    typer.echo(f"version {outcome.version}: champion")


@app.command("image-index-consumer")
def image_index_consumer(
    idle_seconds: IdleSeconds = None,
) -> None:
    """Consume the image-index queue (RabbitMQ, or the outbox in the local profile): each
    new post's photo is embedded by the champion image embedding into post_embeddings,
    where the API's similar-image index finds it within a second. A post that does not
    exist or whose photo is unreadable is dead-lettered."""
    from mlsys.aianimals.messages import Queue, run_consumer
    from mlsys.aianimals.storage import photo_store
    from mlsys.search.post_embeddings import champion_embedding, index_new_posts

    def handler(engine):
        champion = champion_embedding()
        champion.refresh()  # loaded before the first message, not on it
        return partial(index_new_posts, engine, photo_store(), champion)

    configure_logging()
    typer.echo(run_consumer(Queue.image_index, handler, idle_seconds))


if __name__ == "__main__":
    app()
