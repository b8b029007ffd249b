from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy import delete, select

from mlsys.aianimals.messages import Topic, add_to_outbox
from mlsys.aianimals.tables import Animal, Like
from mlsys.api.animals import now
from mlsys.api.deps import CurrentUser, CurrentUserId, SessionDep
from mlsys.api.schemas import HexId, LikeCreate, LikePublic, errors

router = APIRouter(prefix="/v0/like", tags=["like"], responses=errors(401))


@router.get("", response_model=list[LikePublic])
def list_likes(
    session: SessionDep,
    viewer: CurrentUserId,
    animal_id: HexId | None = None,
    user_id: HexId | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000)] = 0,
) -> list[LikePublic]:
    """Likes of a post or by a user, newest first: of the posts the viewer may see (a
    deactivated post's likes only to its owner)."""
    filters = [
        column == value
        for column, value in ((Like.animal_id, animal_id), (Like.user_id, user_id))
        if value is not None
    ]
    shown = Animal.deactivated.is_(False) | (Animal.user_id == viewer)
    rows = session.scalars(
        select(Like)
        .join(Animal, Animal.id == Like.animal_id)
        .where(*filters, shown)
        .order_by(Like.created_at.desc(), Like.animal_id, Like.user_id)
        .limit(limit)
        .offset(offset)
    )
    return [LikePublic.model_validate(row, from_attributes=True) for row in rows]


@router.post(
    "",
    response_model=LikePublic,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": LikePublic, "description": "Already liked: nothing changed"},
        **errors(404),
    },
)
def like(session: SessionDep, user: CurrentUser, like_create: LikeCreate, response: Response):
    """Like a post (once per user: liking again changes nothing and answers 200)."""
    active = session.scalar(
        select(Animal.id).where(Animal.id == like_create.animal_id, Animal.deactivated.is_(False))
    )
    if active is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no post {like_create.animal_id}")
    existing = session.get(Like, (like_create.animal_id, user.id))
    if existing is not None:
        response.status_code = status.HTTP_200_OK
        return LikePublic.model_validate(existing, from_attributes=True)
    liked = Like(animal_id=like_create.animal_id, user_id=user.id, created_at=now())
    session.add(liked)
    session.flush()
    add_to_outbox(session.connection(), Topic.animal_updated, [{"animal_id": liked.animal_id}])
    session.commit()
    return LikePublic.model_validate(liked, from_attributes=True)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT, responses=errors(403, 404))
def unlike(
    session: SessionDep,
    user: CurrentUser,
    animal_id: HexId,
    user_id: Annotated[HexId | None, Query(description="Default: the logged-in user")] = None,
) -> Response:
    """Remove a like. A user can remove only their own likes."""
    if user_id is not None and user_id != user.id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "you can remove only your own likes")
    removed = session.execute(
        delete(Like)
        .where(Like.animal_id == animal_id, Like.user_id == user.id)
        .returning(Like.animal_id)
    ).first()
    if not removed:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"you have not liked {animal_id}")
    add_to_outbox(session.connection(), Topic.animal_updated, [{"animal_id": animal_id}])
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
