"""AIAnimals: users, animal posts, likes, access logs, moderation, and the transactional
outbox."""

from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from mlsys.common.tables import UtcDateTime, product_metadata


class Base(DeclarativeBase):
    metadata = product_metadata()


# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
AutoId = BigInteger().with_variant(Integer(), "sqlite")
# JSONB on PostgreSQL: it has equality, which idempotent upserts compare values with.
Json = JSON().with_variant(JSONB(), "postgresql")


class AnimalCategory(Base):
    __tablename__ = "animal_categories"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    name_en: Mapped[str] = mapped_column(String(64), unique=True)
    name_ja: Mapped[str] = mapped_column(String(64))
    is_deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class AnimalSubcategory(Base):
    __tablename__ = "animal_subcategories"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    animal_category_id: Mapped[int] = mapped_column(ForeignKey("animal_categories.id"))
    name_en: Mapped[str] = mapped_column(String(64), unique=True)
    name_ja: Mapped[str] = mapped_column(String(64))
    is_deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class ViolationType(Base):
    __tablename__ = "violation_types"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)


# The kind of violation the no-animal classifier judges; migration 0008 adds it to every
# database (the seeded master data holds it with the same id).
NO_ANIMAL_VIOLATION_ID = "4cc11afb7f8944ab9b3c1573e85abbf3"
NO_ANIMAL_VIOLATION = "no_animal_violation"


class Role(StrEnum):
    """What a user may do besides using the app (users.role)."""

    user = "user"
    moderator = "moderator"  # may log in to the review portal


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    handle_name: Mapped[str] = mapped_column(String(64), unique=True)
    email_address: Mapped[str] = mapped_column(String(128), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    age: Mapped[int] = mapped_column(Integer)
    gender: Mapped[int] = mapped_column(Integer)
    deactivated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # In every token: bumped on a password change, a deactivation or a log-out everywhere,
    # which revokes every token issued before.
    token_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # A `Role`; `python -m mlsys.batch grant-role` changes it.
    role: Mapped[str] = mapped_column(String(16), default="user", server_default="user")

    __table_args__ = (
        # `Dog_Leigh` is `dog_leigh`, and an address is one whatever its case.
        Index("ux_users_handle_name_lower", func.lower(handle_name), unique=True),
        Index("ux_users_email_address_lower", func.lower(email_address), unique=True),
    )


class Animal(Base):
    """One photo post. `is_generated` marks the seeded dataset, as for beverage sales."""

    __tablename__ = "animals"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    animal_category_id: Mapped[int] = mapped_column(ForeignKey("animal_categories.id"))
    animal_subcategory_id: Mapped[int] = mapped_column(ForeignKey("animal_subcategories.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text)
    photo_key: Mapped[str] = mapped_column(String(256), index=True)
    deactivated: Mapped[bool] = mapped_column(Boolean, default=False)
    is_generated: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Photo(Base):
    """A photo of the `database` store (mlsys.aianimals.storage): written with its post."""

    __tablename__ = "photos"
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    content_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PostActivity(Base):
    """The online ranking features of a post (mlsys.aianimals.ranking.ACTIVITY), counts up
    to `updated_at`: written by `python -m mlsys.search features` (from the access logs)
    and by the ranking-features consumer (new posts, their owners' post counts); read by
    the API's learn_to_rank, which takes a post's like count from the search engine's hit
    (fresher). `feature_set_version` names the definition they follow."""

    __tablename__ = "post_activity"
    animal_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    feature_set_version: Mapped[int] = mapped_column(Integer)
    impressions: Mapped[float] = mapped_column(Float)
    examinations: Mapped[float] = mapped_column(Float)
    selects: Mapped[float] = mapped_column(Float)
    see_longs: Mapped[float] = mapped_column(Float)
    logged_likes: Mapped[float] = mapped_column(Float)
    owner_posts: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Violation(Base):
    """A classifier's judgement of a post: one per (post, violation type, model version),
    so a message delivered twice writes one row. `is_violation`: the probability reached
    the threshold registered with that model version, and the post was deactivated."""

    __tablename__ = "violations"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    animal_id: Mapped[str] = mapped_column(ForeignKey("animals.id"), index=True)
    violation_type_id: Mapped[str] = mapped_column(ForeignKey("violation_types.id"))
    probability: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(96))  # `<registered name>/<version>`
    is_violation: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)

    __table_args__ = (UniqueConstraint("animal_id", "violation_type_id", "model_version"),)


class PostEmbedding(Base):
    """A post's photo as an image-embedding model version sees it (float32 unit vector):
    the similar-image index of that version, which the API builds in memory. Written by
    `python -m mlsys.search build-image-index` (every post, before the version becomes
    the champion) and by the image-index consumer (new posts); `id` grows with every row,
    so a reader catches up with what was added since it last looked."""

    __tablename__ = "post_embeddings"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    model_version: Mapped[str] = mapped_column(String(96))  # `<registered name>/<version>`
    animal_id: Mapped[str] = mapped_column(ForeignKey("animals.id"))
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (UniqueConstraint("model_version", "animal_id"),)


class ViolationReview(Base):
    """A moderator's decision on a violation: `approved` (the post stays deactivated) or
    `reversed` (the post is active again). Every decision is kept; the latest one counts."""

    __tablename__ = "violation_reviews"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    violation_id: Mapped[int] = mapped_column(AutoId, ForeignKey("violations.id"), index=True)
    reviewer_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    decision: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PhotoLabel(Base):
    """What a post's photo shows, as a person decided it: labels the next classifier
    learns from (`python -m mlsys.violation_detection retrain`). One per post: a later
    decision replaces an earlier one."""

    __tablename__ = "photo_labels"
    animal_id: Mapped[str] = mapped_column(ForeignKey("animals.id"), primary_key=True)
    no_animal: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(16))  # `review`: a moderator's decision
    reviewer_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    violation_id: Mapped[int | None] = mapped_column(AutoId, ForeignKey("violations.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Like(Base):
    """A user likes a post at most once: the natural key is (animal, user)."""

    __tablename__ = "likes"
    animal_id: Mapped[str] = mapped_column(ForeignKey("animals.id"), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AccessLog(Base):
    """What a user did with one search result: impression, select, see_long or like.

    Impressions carry the result's position, so a ranking model can correct for position
    bias; the natural key (search, animal, action) makes a retried POST harmless.
    """

    __tablename__ = "access_logs"
    search_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    animal_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    action: Mapped[str] = mapped_column(String(16), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(32), index=True)
    position: Mapped[int | None] = mapped_column(Integer)
    phrases: Mapped[list[str]] = mapped_column(Json)
    animal_category_id: Mapped[int | None] = mapped_column(Integer)
    animal_subcategory_id: Mapped[int | None] = mapped_column(Integer)
    sort_by: Mapped[str] = mapped_column(String(16))
    model_name: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OutboxMessage(Base):
    """A message committed in the same transaction as the change it announces.

    The relay publishes unpublished rows to RabbitMQ and stamps `published_at` (or
    `parked_reason` when no queue takes it); in the local profile consumers read this table
    directly (see ConsumerOffset).
    """

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # Why the relay could not hand it on (no queue takes its topic): it waits for a person.
    parked_reason: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index(
            "ix_outbox_unpublished",
            "id",
            postgresql_where=text("published_at IS NULL"),
            sqlite_where=text("published_at IS NULL"),
        ),
        # Inserted without RETURNING its id: a writer (the API) may queue messages without
        # the privilege to read the queue.
        {"implicit_returning": False},
    )


class ConsumerOffset(Base):
    """Local profile: the last outbox message each consumer has finished with."""

    __tablename__ = "consumer_offsets"
    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_message_id: Mapped[int] = mapped_column(BigInteger)


class DeadLetter(Base):
    """Local profile: a message a consumer gave up on after its bounded retries."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    consumer: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[int] = mapped_column(BigInteger)
    topic: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict] = mapped_column(Json)
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, server_default=func.now())


class LoginFailure(Base):
    """Failed logins in the current window, per account or per client address. In the
    database, not the cache: nothing evicts them to make room for cached searches."""

    __tablename__ = "login_failures"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_ends: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class Registration(Base):
    """A sign-up waiting for its address to be confirmed: the account is made from it when
    the link mailed to the address comes back (`POST /v0/user/verify`), so registering
    tells nobody whether an address is known. Its handle is reserved until it expires,
    whatever the address, so a handle's availability tells nothing either."""

    __tablename__ = "registrations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    handle_name: Mapped[str] = mapped_column(String(64))
    email_address: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(256))
    age: Mapped[int] = mapped_column(Integer)
    gender: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    # SHA-256 of the mailed link's token (the token itself is only in the mail); None
    # until mailed, and for an address that already has an account (its mail says so).
    token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    mailed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ux_registrations_handle_name_lower", func.lower(handle_name), unique=True),
    )


# The measures of a classifier drift check (written by the monitoring job).
FLAGGED_SHARE_MEASURE = "flagged_share"  # the share of posts judged violations
PROBABILITY_MEASURE = "probability"  # the distribution of the no-animal probability
# A ranker drift check's measures: each feature by its name, and the share of them that
# drifted under this one.
RANKER_DATASET_MEASURE = "dataset"


class ModelDriftResult(Base):
    """One measure of a drift check of an AIAnimals model in the window ending
    `window_end`. The classifier's: the posts a version judged that were created in the
    window, against those it judged before; `reference` and `current` are the measure's
    values in each (a share, or the mean probability), `score` the test's p-value. The
    search ranker's: the features of the results shown in the window's searches against
    its training reference; `reference` and `current` the feature's means, `score` the
    distance (or the share of features drifted). Natural key (model, version, window end,
    measure): checking a window again replaces it."""

    __tablename__ = "model_drift_results"
    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    window_end: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    measure: Mapped[str] = mapped_column(String(64), primary_key=True)
    method: Mapped[str] = mapped_column(String(32))  # z, ks
    reference: Mapped[float] = mapped_column(Float)
    current: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    drifted: Mapped[bool] = mapped_column(Boolean)
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime, server_default=func.now())
