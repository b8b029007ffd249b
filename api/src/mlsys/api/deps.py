"""Dependencies of the routes, as `Annotated` aliases."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlsys.api.security import InvalidToken, user_id_from_token
from mlsys.common.cache import Cache, get_cache
from mlsys.common.db import get_engine
from mlsys.common.search import SearchIndex, get_search_index
from mlsys.common.tables import User


def get_session() -> Iterator[Session]:
    with Session(get_engine()) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
CacheDep = Annotated[Cache, Depends(get_cache)]
SearchIndexDep = Annotated[SearchIndex, Depends(get_search_index)]

_bearer = HTTPBearer(auto_error=False, description="The token from /v0/user/login")


def current_user_id(
    token: Annotated[
        str | None, Header(description="The token from /v0/user/login (what the app sends)")
    ] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> str:
    """The logged-in user's id, from the `token` header or `Authorization: Bearer`.

    Checks the signed, expiring token only (no query): enough for reads. Writes use
    CurrentUser, which also checks that the user still exists and is active.
    """
    raw = token or (bearer.credentials if bearer else None)
    if not raw:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "log in first: send the token from /v0/user/login in the `token` header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        return user_id_from_token(raw)
    except InvalidToken as error:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(error), headers={"WWW-Authenticate": "Bearer"}
        ) from error


CurrentUserId = Annotated[str, Depends(current_user_id)]


def current_user(session: SessionDep, user_id: CurrentUserId) -> User:
    user = session.scalar(select(User).where(User.id == user_id))
    if user is None or user.deactivated:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the user no longer exists")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
