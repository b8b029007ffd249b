"""Moderators' review of violations: who may review, what there is to review, and the
decisions, each of which becomes a label the next classifier learns from.

A decision is `approved` (the photo shows no animal: the post stays, or becomes,
deactivated) or `reversed` (it shows one: the post is active again, back in search,
unless its owner's account is deactivated). The decision, the label and the post's change
with its outbox message are one transaction: nothing is half-written.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

import pandas as pd
from sqlalchemy import Engine, and_, func, select, update
from sqlalchemy import insert as insert_into
from sqlalchemy.dialects import postgresql, sqlite

from mlsys.aianimals.messages import Topic, add_to_outbox
from mlsys.aianimals.passwords import verify_password
from mlsys.aianimals.tables import (
    Animal,
    PhotoLabel,
    Role,
    User,
    Violation,
    ViolationReview,
    ViolationType,
)
from mlsys.aianimals.throttle import LoginThrottle

LABEL_SOURCE = "review"


class Decision(StrEnum):
    approved = "approved"  # a violation: the photo shows no animal
    reversed = "reversed"  # no violation: the photo shows an animal


@dataclass(frozen=True)
class Reviewer:
    id: str
    handle_name: str
    token_version: int  # as at the login: a logout or a new password ends the session


class LoginRefused(Exception):
    """No moderator logs in: the message says so, the same for a wrong handle, a wrong
    password and an account that is not a moderator's (the portal tells no one which)."""


REFUSED = "Wrong handle name or password, or not a moderator's account."


def log_in(engine: Engine, throttle: LoginThrottle, handle_name: str, password: str) -> Reviewer:
    """The moderator with this handle and password (the same Argon2 hashes the API
    checks), or LoginRefused. Failures count against the account in the API's login
    throttle, so the portal buys a guesser no more guesses than the API does."""
    with engine.begin() as db:  # the throttle's counts are written in this transaction
        user = db.execute(
            select(User.id, User.handle_name, User.password_hash, User.role, User.deactivated,
                   User.token_version)
            .where(func.lower(User.handle_name) == handle_name.strip().lower())
        ).one_or_none()  # fmt: skip
        account = user.id if user is not None else f"unknown:{handle_name.strip().casefold()}"
        if wait := throttle.retry_after(db, account, None):
            raise LoginRefused(f"Too many failed logins: try again in {wait} s.")
        valid = verify_password(password, user.password_hash if user else None)
        reviewer = (
            Reviewer(user.id, user.handle_name, user.token_version)
            if valid and user is not None and not user.deactivated and user.role == Role.moderator
            else None
        )
        if not valid:
            throttle.failed(db, account, None)
        elif reviewer is not None:
            throttle.succeeded(db, account)
    if reviewer is None:  # raised after the commit: a failure is counted
        raise LoginRefused(REFUSED)
    return reviewer


def still_reviewing(engine: Engine, reviewer: Reviewer) -> bool:
    """Whether the session's moderator still may decide: active, a moderator, and with the
    token version of the login (checked on every rerun of the portal)."""
    with engine.connect() as db:
        user = db.execute(
            select(User.role, User.deactivated, User.token_version).where(User.id == reviewer.id)
        ).one_or_none()
    return (
        user is not None
        and not user.deactivated
        and user.role == Role.moderator
        and user.token_version == reviewer.token_version
    )


def _latest_reviews():
    """Each violation's latest decision."""
    ranked = select(
        ViolationReview.violation_id,
        ViolationReview.decision,
        ViolationReview.reviewer_id,
        ViolationReview.created_at,
        func.row_number()
        .over(partition_by=ViolationReview.violation_id, order_by=ViolationReview.id.desc())
        .label("rank"),
    ).subquery()
    return select(ranked).where(ranked.c.rank == 1).subquery()


def violations(
    engine: Engine,
    *,
    types: list[str] | None = None,
    since: date | None = None,
    until: date | None = None,
    decided: bool | None = None,
    limit: int = 1000,
) -> pd.DataFrame:
    """Violations, newest first, with their post, type and latest decision; filtered by
    type names, by the day they were found (inclusive, UTC), by decided or not."""
    statement = _listing(decided).order_by(Violation.created_at.desc(), Violation.id.desc())
    if types:
        statement = statement.where(ViolationType.name.in_(types))
    if since is not None:
        statement = statement.where(Violation.created_at >= _start_of(since))
    if until is not None:
        statement = statement.where(Violation.created_at < _start_of(until + timedelta(days=1)))
    return _frame(engine, statement.limit(limit))


def _listing(decided: bool | None):
    """Violations joined with their post, type, latest decision and its reviewer."""
    latest = _latest_reviews()
    reviewer = select(User.id, User.handle_name).subquery()
    statement = (
        select(
            Violation.id,
            Violation.animal_id,
            Animal.name.label("post"),
            Animal.photo_key,
            Animal.deactivated,
            ViolationType.name.label("type"),
            Violation.probability,
            Violation.threshold,
            Violation.model_version,
            Violation.is_violation,
            Violation.created_at,
            latest.c.decision,
            reviewer.c.handle_name.label("reviewer"),
            latest.c.created_at.label("decided_at"),
        )
        .join(Animal, Animal.id == Violation.animal_id)
        .join(ViolationType, ViolationType.id == Violation.violation_type_id)
        .outerjoin(latest, latest.c.violation_id == Violation.id)
        .outerjoin(reviewer, reviewer.c.id == latest.c.reviewer_id)
    )
    if decided is not None:
        statement = statement.where(
            latest.c.decision.is_not(None) if decided else latest.c.decision.is_(None)
        )
    return statement


def _frame(engine: Engine, statement) -> pd.DataFrame:
    with engine.connect() as db:
        rows = db.execute(statement).mappings().all()
    return pd.DataFrame(rows, columns=list(statement.selected_columns.keys()))


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def per_day(frame: pd.DataFrame) -> pd.DataFrame:
    """Violations found per day (UTC) and whether they were judged violations."""
    if frame.empty:
        return pd.DataFrame(columns=["day", "outcome", "violations"])
    days = pd.to_datetime(frame["created_at"], utc=True).dt.floor("D").dt.tz_localize(None)
    outcome = frame["is_violation"].map({True: "deactivated", False: "below threshold"})
    counted = pd.DataFrame({"day": days, "outcome": outcome}).value_counts().rename("violations")
    return counted.reset_index().sort_values("day")


def review_queue(engine: Engine, limit: int = 20, post: str | None = None) -> pd.DataFrame:
    """What awaits a moderator, oldest first: posts the classifier deactivated that nobody
    has decided on yet; with `post`, those whose id is it or whose name contains it."""
    statement = _listing(decided=False).where(Violation.is_violation)
    if post:
        statement = statement.where(
            (Violation.animal_id == post) | Animal.name.contains(post, autoescape=True)
        )
    return _frame(engine, statement.order_by(Violation.created_at, Violation.id).limit(limit))


def decide(engine: Engine, violation_id: int, reviewer: Reviewer, decision: Decision) -> None:
    """Store a moderator's decision and its label, and make the post follow it."""
    now = datetime.now(UTC)
    with engine.begin() as db:
        animal_id = db.scalar(select(Violation.animal_id).where(Violation.id == violation_id))
        if animal_id is None:
            raise LookupError(f"no violation {violation_id}")
        db.execute(
            insert_into(ViolationReview).values(
                violation_id=violation_id,
                reviewer_id=reviewer.id,
                decision=decision.value,
                created_at=now,
            )
        )
        label = {
            "animal_id": animal_id,
            "no_animal": decision is Decision.approved,
            "source": LABEL_SOURCE,
            "reviewer_id": reviewer.id,
            "violation_id": violation_id,
            "created_at": now,
        }
        insert = (postgresql.insert if db.dialect.name == "postgresql" else sqlite.insert)(
            PhotoLabel
        )
        db.execute(
            insert.values(label).on_conflict_do_update(
                index_elements=[PhotoLabel.animal_id],
                set_={k: v for k, v in label.items() if k != "animal_id"},
            )
        )
        if decision is Decision.approved:
            changed = db.execute(
                update(Animal)
                .where(Animal.id == animal_id, Animal.deactivated.is_(False))
                .values(deactivated=True, updated_at=now)
            ).rowcount  # fmt: skip
        else:
            owner_active = (
                select(User.id)
                .where(and_(User.id == Animal.user_id, User.deactivated.is_(False)))
                .exists()
            )
            changed = db.execute(
                update(Animal)
                .where(Animal.id == animal_id, Animal.deactivated.is_(True), owner_active)
                .values(deactivated=False, updated_at=now)
            ).rowcount  # fmt: skip
        if changed:
            add_to_outbox(db, Topic.animal_updated, [{"animal_id": animal_id}])


def labels(engine: Engine) -> pd.DataFrame:
    """The labels people made: post, photo key, no_animal, source, reviewer, when."""
    statement = (
        select(
            PhotoLabel.animal_id,
            Animal.photo_key,
            PhotoLabel.no_animal,
            PhotoLabel.source,
            PhotoLabel.reviewer_id,
            PhotoLabel.created_at,
        )
        .join(Animal, Animal.id == PhotoLabel.animal_id)
        .order_by(PhotoLabel.created_at, PhotoLabel.animal_id)
    )
    with engine.connect() as db:
        rows = db.execute(statement).mappings().all()
    return pd.DataFrame(rows, columns=list(statement.selected_columns.keys()))
