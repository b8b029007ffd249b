"""Data access for posts: plain functions with keyword-only arguments."""

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from mlsys.aianimals import storage
from mlsys.aianimals.indexing import documents_query, to_document
from mlsys.aianimals.search import AnimalDocument
from mlsys.aianimals.tables import Animal, Like
from mlsys.api.schemas import AnimalPublic


def public(document: AnimalDocument) -> AnimalPublic:
    """What clients see of a post: its photo as a URL instead of a storage key."""
    return AnimalPublic(
        **document.model_dump(exclude={"photo_key", "score"}),
        photo_url=storage.url_of(document.photo_key),
    )


def list_animals(*, session: Session, filters: list, limit: int, offset: int) -> list[AnimalPublic]:
    statement = (
        documents_query()
        .where(*filters)
        .order_by(Animal.created_at.desc(), Animal.id)
        .limit(limit)
        .offset(offset)
    )
    return [public(to_document(row)) for row in session.execute(statement)]


def liked_by(*, session: Session, user_id: str, limit: int, offset: int) -> list[AnimalPublic]:
    statement = (
        documents_query()
        .join(Like, (Like.animal_id == Animal.id) & (Like.user_id == user_id))
        .where(Animal.deactivated.is_(False))
        .order_by(Like.created_at.desc(), Animal.id)
        .limit(limit)
        .offset(offset)
    )
    return [public(to_document(row)) for row in session.execute(statement)]


def get_animal(*, session: Session, animal_id: str) -> AnimalPublic | None:
    row = session.execute(documents_query().where(Animal.id == animal_id)).first()
    return public(to_document(row)) if row else None


def now() -> datetime:
    return datetime.now(UTC)
