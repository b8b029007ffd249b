"""The AIAnimals database: its schema (tables + migrations) and its engine."""

from pathlib import Path

from sqlalchemy import Engine

from mlsys.aianimals.tables import Base
from mlsys.common import db, migrate

_MASTER = ("animal_categories", "animal_subcategories", "violation_types")
_WRITE = "SELECT, INSERT, UPDATE"

SCHEMA = migrate.Schema(
    name="aianimals",
    versions=Path(__file__).parent / "migrations",
    metadata=Base.metadata,
    adopts={"0002": "0002"},  # the former shared chain's second revision was ours
    privileges={
        # Registers users, posts, likes and unlikes, logs access; outbox rows go out with
        # each change. Deleting is only a like's and a registration's (confirmed or
        # expired): posts and users are deactivated.
        "api": {
            **dict.fromkeys(_MASTER, "SELECT"),
            "users": _WRITE,
            "animals": _WRITE,
            "likes": "SELECT, INSERT, DELETE",
            "access_logs": "INSERT",
            "outbox": "SELECT, INSERT",  # SELECT: /metrics reports the outbox's lag
            "photos": "SELECT, INSERT",
            "post_activity": "SELECT",  # learn_to_rank's online features
            "post_embeddings": "SELECT",  # the similar-image index
            "login_failures": "SELECT, INSERT, UPDATE, DELETE",  # the login throttle
            "violations": "SELECT",  # /metrics reports the posts waiting for a verdict
            "registrations": "SELECT, INSERT, DELETE",  # sign-ups until confirmed
        },
        # Initial load (upserts everything), the relay (marks outbox rows), the
        # search-index consumer (reads posts), the account mailer (stamps the sign-ups it
        # mailed a link for) and the local broker's offsets and dead letters (a replay
        # deletes what it moved back).
        "batch": {
            **dict.fromkeys((*_MASTER, "users", "animals", "likes", "access_logs"), _WRITE),
            "outbox": _WRITE,
            "consumer_offsets": _WRITE,
            "dead_letters": "SELECT, INSERT, DELETE",
            "photos": "SELECT, INSERT",  # the seeded photos
            "violations": "SELECT",  # MODERATION_UNJUDGED_POSTS=hidden indexes judged posts
            "registrations": "SELECT, UPDATE",
        },
        # The ranking jobs read posts, likes and the access logs, and write the posts'
        # online features (the job, and the consumer of new posts and likes, whose local
        # broker keeps offsets and dead letters in tables); the similar-image jobs read
        # the posts' photos and write their embeddings (the job, and the consumer of new
        # posts).
        "search": {
            **dict.fromkeys(
                (*_MASTER, "users", "animals", "likes", "access_logs", "photos"), "SELECT"
            ),
            "post_activity": _WRITE,
            "post_embeddings": "SELECT, INSERT",
            "outbox": "SELECT",
            "consumer_offsets": _WRITE,
            "dead_letters": "SELECT, INSERT",
        },
        # Moderation: the detection consumer reads new posts and their photos, records
        # violations and deactivates (an UPDATE, announced in the outbox); the portal logs
        # moderators in (users: read only; the login throttle shared with the API), stores
        # their reviews and the labels they make, and reactivates what they reverse;
        # retraining reads the labels and their photos.
        "violation_detection": {
            **dict.fromkeys((*_MASTER, "users", "photos"), "SELECT"),
            "animals": "SELECT, UPDATE",
            "violations": "SELECT, INSERT",
            "violation_reviews": "SELECT, INSERT",
            "photo_labels": _WRITE,
            "outbox": "SELECT, INSERT",
            "consumer_offsets": _WRITE,
            "dead_letters": "SELECT, INSERT",
            "login_failures": "SELECT, INSERT, UPDATE, DELETE",  # the portal's logins
        },
        # The drift checks: the classifier's reads the judgements and when their posts were
        # created, the ranker's the ranking data (posts, likes, the access logs); both
        # write their verdicts.
        "monitoring": {
            **dict.fromkeys(
                ("animals", "animal_subcategories", "likes", "access_logs", "violations"),
                "SELECT",
            ),
            "model_drift_results": "SELECT, INSERT, UPDATE",
        },
    },
)


def get_engine() -> Engine:
    return db.get_engine(SCHEMA.name)


def upgrade(engine: Engine | None = None) -> None:
    """Create or migrate the AIAnimals tables (idempotent)."""
    migrate.upgrade(SCHEMA, engine or get_engine())


def upgrade_or_wait(engine: Engine | None = None) -> None:
    """At a component's start: the AIAnimals tables at head, migrated here where this role
    may, else once the `migrate` command has run (see `migrate.upgrade_or_wait`)."""
    migrate.upgrade_or_wait(SCHEMA, engine or get_engine())
