from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlsys.aianimals.tables import AnimalCategory, AnimalSubcategory, ViolationType
from mlsys.api.deps import SessionDep
from mlsys.api.schemas import (
    AnimalCategoryPublic,
    AnimalSubcategoryPublic,
    Metadata,
    Short,
    ViolationTypePublic,
)

router = APIRouter(prefix="/v0", tags=["metadata"])


def _categories(session: Session, *filters) -> list[AnimalCategoryPublic]:
    rows = session.scalars(select(AnimalCategory).where(*filters).order_by(AnimalCategory.id))
    return [AnimalCategoryPublic.model_validate(r, from_attributes=True) for r in rows]


def _subcategories(session: Session, *filters) -> list[AnimalSubcategoryPublic]:
    rows = session.scalars(select(AnimalSubcategory).where(*filters).order_by(AnimalSubcategory.id))
    return [AnimalSubcategoryPublic.model_validate(r, from_attributes=True) for r in rows]


def _violation_types(session: Session) -> list[ViolationTypePublic]:
    rows = session.scalars(select(ViolationType).order_by(ViolationType.name))
    return [ViolationTypePublic.model_validate(r, from_attributes=True) for r in rows]


@router.get("/metadata", response_model=Metadata)
def metadata(session: SessionDep) -> Metadata:
    """Everything the app needs to build its filters: categories, breeds, violation types."""
    return Metadata(
        animal_category=_categories(session),
        animal_subcategory=_subcategories(session),
        violation_type=_violation_types(session),
    )


@router.get("/animal_category", response_model=list[AnimalCategoryPublic])
def animal_categories(
    session: SessionDep,
    id: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    name_en: Annotated[Short | None, Query()] = None,
    name_ja: Annotated[Short | None, Query()] = None,
    is_deleted: bool | None = None,
) -> list[AnimalCategoryPublic]:
    """Animal categories (cat, dog, other), filtered by any of the parameters."""
    filters = [
        column == value
        for column, value in (
            (AnimalCategory.id, id),
            (AnimalCategory.name_en, name_en),
            (AnimalCategory.name_ja, name_ja),
            (AnimalCategory.is_deleted, is_deleted),
        )
        if value is not None
    ]
    return _categories(session, *filters)


@router.get("/animal_category/subcategory", response_model=list[AnimalSubcategoryPublic])
def animal_subcategories(
    session: SessionDep,
    id: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    animal_category_id: Annotated[int | None, Query(ge=0, le=2**31 - 1)] = None,
    name_en: Annotated[Short | None, Query()] = None,
    name_ja: Annotated[Short | None, Query()] = None,
    is_deleted: bool | None = None,
) -> list[AnimalSubcategoryPublic]:
    """Breeds, filtered by any of the parameters (e.g. one category's breeds)."""
    filters = [
        column == value
        for column, value in (
            (AnimalSubcategory.id, id),
            (AnimalSubcategory.animal_category_id, animal_category_id),
            (AnimalSubcategory.name_en, name_en),
            (AnimalSubcategory.name_ja, name_ja),
            (AnimalSubcategory.is_deleted, is_deleted),
        )
        if value is not None
    ]
    return _subcategories(session, *filters)


@router.get("/violation/type", response_model=list[ViolationTypePublic])
def violation_types(session: SessionDep) -> list[ViolationTypePublic]:
    """The kinds of violation a post can be moderated for."""
    return _violation_types(session)
