"""Data access for posts: plain functions with keyword-only arguments."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from mlsys.api.schemas import AnimalPublic
from mlsys.common import storage
from mlsys.common.tables import Animal, AnimalCategory, AnimalSubcategory, Like, User

_LIKES = select(func.count()).where(Like.animal_id == Animal.id).correlate(Animal).scalar_subquery()


def _animals() -> Select:
    """Posts with their names and like counts, in one statement (no query per post)."""
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


def _public(row: Any) -> AnimalPublic:
    animal, category_en, category_ja, subcategory_en, subcategory_ja, handle, likes = row
    return AnimalPublic(
        id=animal.id,
        name=animal.name,
        description=animal.description,
        photo_url=storage.url_of(animal.photo_key),
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


def list_animals(*, session: Session, filters: list, limit: int, offset: int) -> list[AnimalPublic]:
    statement = (
        _animals()
        .where(*filters)
        .order_by(Animal.created_at.desc(), Animal.id)
        .limit(limit)
        .offset(offset)
    )
    return [_public(row) for row in session.execute(statement)]


def liked_by(*, session: Session, user_id: str, limit: int, offset: int) -> list[AnimalPublic]:
    statement = (
        _animals()
        .join(Like, (Like.animal_id == Animal.id) & (Like.user_id == user_id))
        .where(Animal.deactivated.is_(False))
        .order_by(Like.created_at.desc(), Animal.id)
        .limit(limit)
        .offset(offset)
    )
    return [_public(row) for row in session.execute(statement)]


def get_animal(*, session: Session, animal_id: str) -> AnimalPublic | None:
    row = session.execute(_animals().where(Animal.id == animal_id)).first()
    return _public(row) if row else None


def now() -> datetime:
    return datetime.now(UTC)
