"""The search-index consumer: keeps the search index in sync with the posts.

Each message names a post (`{"animal_id": ...}`); the handler reads the post's current
state from the database and upserts it, or deletes it when it is gone or deactivated.
Reading the current state, not the message, makes the handler idempotent and immune to
message order. After a batch is indexed, cached search responses are invalidated.
"""

from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, Row, Select, exists, func, select
from sqlalchemy.orm import Session

from mlsys.aianimals.cache import get_cache
from mlsys.aianimals.messages import Message, PermanentFailure
from mlsys.aianimals.search import AnimalDocument, SearchIndex
from mlsys.aianimals.settings import moderation_settings
from mlsys.aianimals.tables import (
    Animal,
    AnimalCategory,
    AnimalSubcategory,
    Like,
    User,
    Violation,
)
from mlsys.common.logging import get_logger

log = get_logger(__name__)


class InvalidMessage(PermanentFailure, ValueError):
    """A message without a post id: retrying cannot fix it, it is dead-lettered at once."""


_LIKES = select(func.count()).where(Like.animal_id == Animal.id).correlate(Animal).scalar_subquery()


# Whether a classifier has judged the post (a verdict of any model version).
_JUDGED = exists().where(Violation.animal_id == Animal.id)


def waiting_for_verdict(connection: Connection) -> tuple[int, float]:
    """Active posts no classifier has judged yet, and the age in seconds of the oldest: a
    classifier outage or a dead-lettered moderation message shows here."""
    count, oldest = connection.execute(
        select(func.count(), func.min(Animal.created_at)).where(
            Animal.deactivated.is_(False), ~_JUDGED
        )
    ).one()
    if not count:
        return 0, 0.0
    return count, max((datetime.now(UTC) - oldest).total_seconds(), 0.0)


def documents_query() -> Select:
    """Posts with their category, breed and owner names and like counts, in one statement
    (no query per post); the API lists posts with it too."""
    return (
        select(
            Animal,
            AnimalCategory.name_en,
            AnimalCategory.name_ja,
            AnimalSubcategory.name_en,
            AnimalSubcategory.name_ja,
            User.handle_name,
            _LIKES.label("likes"),
        )
        .join(AnimalCategory, AnimalCategory.id == Animal.animal_category_id)
        .join(AnimalSubcategory, AnimalSubcategory.id == Animal.animal_subcategory_id)
        .join(User, User.id == Animal.user_id)
    )


def to_document(row: Row) -> AnimalDocument:
    """A row of `documents_query()` as a document."""
    animal, category_en, category_ja, subcategory_en, subcategory_ja, handle, likes = row
    return AnimalDocument(
        id=animal.id,
        name=animal.name,
        description=animal.description,
        photo_key=animal.photo_key,
        animal_category_id=animal.animal_category_id,
        animal_category_name_en=category_en,
        animal_category_name_ja=category_ja,
        animal_subcategory_id=animal.animal_subcategory_id,
        animal_subcategory_name_en=subcategory_en,
        animal_subcategory_name_ja=subcategory_ja,
        user_id=animal.user_id,
        user_handle_name=handle,
        like=likes,
        created_at=animal.created_at,
    )


def load_documents(engine: Engine, animal_ids: list[str]) -> dict[str, AnimalDocument]:
    """Documents of the posts among `animal_ids` that search may show: active ones, and
    with MODERATION_UNJUDGED_POSTS=hidden only those the classifier has judged."""
    statement = documents_query().where(Animal.id.in_(animal_ids), Animal.deactivated.is_(False))
    if moderation_settings().unjudged_posts == "hidden":
        statement = statement.where(_JUDGED)
    with Session(engine) as session:
        documents = [to_document(row) for row in session.execute(statement)]
    return {document.id: document for document in documents}


def post_ids(messages: list[Message]) -> list[str]:
    ids = []
    for message in messages:
        animal_id = message.payload.get("animal_id") if isinstance(message.payload, dict) else None
        if not isinstance(animal_id, str) or not animal_id:
            raise InvalidMessage(f"message {message.id} ({message.topic}) has no animal_id")
        ids.append(animal_id)
    return list(dict.fromkeys(ids))


def index_posts(engine: Engine, index: SearchIndex, messages: list[Message]) -> None:
    ids = post_ids(messages)
    documents = load_documents(engine, ids)
    index.upsert(list(documents.values()))
    index.delete([i for i in ids if i not in documents])
    try:
        get_cache().invalidate()
    except Exception as error:  # the index is right; cached answers expire by their TTL
        log.error("cache not invalidated after indexing error=%r", error)
