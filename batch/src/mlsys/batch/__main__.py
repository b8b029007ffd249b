"""Command line of the AIAnimals batch jobs."""

from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from mlsys.aianimals.settings import generated_dir
from mlsys.aianimals.tables import Role
from mlsys.common.cli import IdleSeconds
from mlsys.common.logging import configure_logging
from mlsys.common.metrics import job

app = typer.Typer(
    help="AIAnimals batch jobs: generate the synthetic activity, load everything into the "
    "database (SQLite under .mlsys/ by default, PostgreSQL with MLSYS_PROFILE=services), "
    "relay the outbox to RabbitMQ, keep the search index in sync, and mail sign-ups.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.command()
def generate(
    output: Annotated[
        Path | None,
        typer.Option(help="Folder to write the CSV files into. Default: MLSYS_HOME/aianimals."),
    ] = None,
    posts: Annotated[int, typer.Option(min=1, help="Animal posts to generate.")] = 10_000,
    searches: Annotated[
        int, typer.Option(min=0, help="Search sessions in the access logs (20 results each).")
    ] = 5_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same files.")] = 0,
    dataset_dir: Annotated[
        Path, typer.Option(help="The dataset folder with aianimals/ and images/.")
    ] = Path("dataset"),
    no_animal_share: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="The share of posts without an animal from "
            "--shift-from on (default: the usual 3 %, no shift).",
        ),
    ] = None,
    newest_first: Annotated[
        bool,
        typer.Option(
            help="From --shift-from on, most searches ask for the newest posts first (the "
            "app's default order changed: a drift of the ranker's inputs)."
        ),
    ] = False,
    shift_from: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="The day the shifts asked for start (UTC)."),
    ] = None,
) -> None:
    """Generate posts, likes and search access logs (seeded) as CSV files.

    Writes animals.csv, likes.csv, access_logs.csv, hidden_quality.csv (the click model's
    hidden relevance, for evaluating rankers only), synonym_queries.json (nicknames and the
    words they stand for, with what they mean: for evaluating similar words only) and
    provenance.json.
    """
    from mlsys.batch.dataset import read_master_data
    from mlsys.batch.generate import NewestFirstShift, NoAnimalShift, write
    from mlsys.batch.generate import generate as run

    shifted = no_animal_share is not None or newest_first
    if shifted != (shift_from is not None):
        raise typer.BadParameter(
            "--shift-from goes with a shift (--no-animal-share, --newest-first), and they with it"
        )
    since = shift_from.replace(tzinfo=UTC) if shift_from else None
    shift = NoAnimalShift(no_animal_share, since) if no_animal_share is not None and since else None
    order = NewestFirstShift(since) if newest_first and since else None
    master = read_master_data(dataset_dir / "aianimals")
    activity = run(master, dataset_dir / "images", posts, searches, seed, shift, order)
    output = output or generated_dir()
    provenance: dict = {"posts": posts, "searches": searches, "seed": seed}
    if shift is not None:
        provenance["no_animal_shift"] = {"share": shift.share, "since": shift.since.isoformat()}
    if order is not None:
        provenance["newest_first_since"] = order.since.isoformat()
    write(activity, output, provenance)
    typer.echo(
        f"wrote {len(activity.animals)} posts, {len(activity.likes)} likes, "
        f"{len(activity.access_logs)} access logs to {output}"
    )


@app.command()
def migrate() -> None:
    """Create or migrate the AIAnimals tables, then grant each component's PostgreSQL
    role (aianimals_api, aianimals_batch, where they exist) its privileges.

    Run it as the database's owner role, before the other components start: they connect
    as their own roles, which may not change tables, and only check the schema is current.
    """
    from mlsys.aianimals.database import SCHEMA, get_engine, upgrade

    configure_logging()
    upgrade(get_engine())
    typer.echo(f"{SCHEMA.name}: at head")


@app.command("initial-load")
@job
def initial_load(
    generated: Annotated[
        Path | None,
        typer.Option(help="Folder written by `generate`. Default: MLSYS_HOME/aianimals."),
    ] = None,
    dataset_dir: Annotated[
        Path, typer.Option(help="The dataset folder with aianimals/ and images/.")
    ] = Path("dataset"),
) -> None:
    """Load categories, breeds, violation types, users (passwords hashed with Argon2id),
    posts, likes and access logs; copy the photos into storage; queue one outbox message
    per new post for indexing and moderation. Running it twice changes nothing."""
    from mlsys.aianimals.database import get_engine
    from mlsys.batch.dataset import InvalidDataset, read_master_data
    from mlsys.batch.load import initial_load as run
    from mlsys.batch.load import read_generated

    configure_logging()
    try:
        master = read_master_data(dataset_dir / "aianimals")
        activity = read_generated(generated or generated_dir())
        summary = run(get_engine(), master, activity, dataset_dir / "images")
    except InvalidDataset as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from error
    counts = ", ".join(f"{table} {count}" for table, count in summary.counts.items())
    typer.echo(f"rows: {counts}")
    typer.echo(
        f"written: {sum(summary.written.values())}; new posts queued: {summary.new_posts}; "
        f"photos copied: {summary.photos_copied}"
    )


@app.command()
def relay(
    follow: Annotated[
        bool, typer.Option(help="Keep relaying new messages until stopped (SIGTERM).")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between polls with --follow.")] = 1.0,
) -> None:
    """Publish waiting outbox messages to RabbitMQ with publisher confirms (services
    profile). While RabbitMQ is unreachable messages wait in the outbox; with --follow the
    relay retries every interval."""
    import time

    import pika.exceptions

    from mlsys.aianimals.database import get_engine, upgrade_or_wait
    from mlsys.aianimals.messages import relay_outbox, stop_on_signal
    from mlsys.common.logging import get_logger
    from mlsys.common.metrics import serve_worker_metrics

    configure_logging()
    log, stop, engine = get_logger("mlsys.batch.relay"), stop_on_signal(), get_engine()
    upgrade_or_wait(engine)
    if follow:
        serve_worker_metrics()
    while True:
        try:
            published = relay_outbox(engine)
            typer.echo(f"published: {published}")
        except pika.exceptions.AMQPConnectionError as error:
            if not follow:
                typer.echo(f"error: RabbitMQ is unreachable ({error!r}); messages wait", err=True)
                raise typer.Exit(1) from error
            log.warning("rabbitmq unreachable error=%r; retrying", error)
        except pika.exceptions.AMQPError as error:  # a refusal: the broker answers
            if not follow:
                typer.echo(f"error: RabbitMQ refused a message ({error!r}); it waits", err=True)
                raise typer.Exit(1) from error
            log.warning("rabbitmq refused error=%r; retrying", error)
        if not follow or stop():
            return
        time.sleep(interval)


@app.command("search-index")
def search_index(
    idle_seconds: IdleSeconds = None,
) -> None:
    """Consume the search-index queue (RabbitMQ, or the outbox in the local profile):
    index new and changed posts, remove deactivated ones, invalidate cached searches."""
    from mlsys.aianimals.indexing import index_posts
    from mlsys.aianimals.messages import Queue, run_consumer
    from mlsys.aianimals.search import get_search_index

    def handler(engine):
        index = get_search_index()
        index.create_index()  # its one writer creates it; the API replicas only search it
        return partial(index_posts, engine, index)

    configure_logging()
    typer.echo(run_consumer(Queue.search_index, handler, idle_seconds))


@app.command("account-mail")
def account_mail(
    idle_seconds: IdleSeconds = None,
) -> None:
    """Consume the account-mail queue (RabbitMQ, or the outbox in the local profile): mail
    each sign-up its confirmation link (or, to an address that has an account, a note
    saying so) where MAIL_URL says."""
    from mlsys.aianimals.messages import Queue, run_consumer
    from mlsys.aianimals.registrations import mail_registrations
    from mlsys.aianimals.settings import mail_settings

    configure_logging()
    settings = mail_settings()  # refuses an empty MAIL_URL in production, before waiting
    stats = run_consumer(
        Queue.account_mail,
        lambda engine: partial(mail_registrations, engine, settings),
        idle_seconds,
    )
    typer.echo(stats)


@app.command("grant-role")
def grant_role(
    handle_name: Annotated[str, typer.Argument(help="The user's handle name.")],
    role: Annotated[
        Role, typer.Argument(help="`moderator` (may use the review portal) or `user`.")
    ],
) -> None:
    """Give a user a role: `moderator` lets them log in to the review portal
    (python -m mlsys.violation_detection portal); `user` takes it back."""
    from mlsys.aianimals.database import get_engine, upgrade_or_wait
    from mlsys.batch.roles import grant_role as grant

    engine = get_engine()
    upgrade_or_wait(engine)
    if not grant(engine, handle_name, role):
        typer.echo(f"error: no user {handle_name!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"{handle_name}: {role}")


@app.command("replay-dead-letters")
def replay_dead_letters(
    queue: Annotated[str, typer.Argument(help="The consumer's queue, e.g. search-index.")],
) -> None:
    """Give a queue its dead-lettered messages again, once what failed them is fixed
    (RabbitMQ: <queue>.dead -> <queue>, attempts reset; local profile: back into the
    outbox)."""
    from mlsys.aianimals.database import get_engine
    from mlsys.aianimals.messages import Queue
    from mlsys.aianimals.messages import replay_dead_letters as replay

    configure_logging()
    try:
        chosen = Queue(queue)
    except ValueError as error:
        known = ", ".join(q.value for q in Queue)
        typer.echo(f"error: unknown queue {queue!r} (known: {known})", err=True)
        raise typer.Exit(2) from error
    typer.echo(f"replayed: {replay(chosen, get_engine())}")


if __name__ == "__main__":
    app()
