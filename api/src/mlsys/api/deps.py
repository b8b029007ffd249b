"""Dependencies of the routes, as `Annotated` aliases.

The engine, search index and auth settings are built once at startup (see
app.lifespan) and kept on `app.state`: nothing is re-read from the environment per request.
"""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.orm import Session

from mlsys.aianimals.search import SearchIndex
from mlsys.aianimals.settings import AuthSettings
from mlsys.aianimals.tables import User
from mlsys.api.security import InvalidToken, presented_token, user_id_from_token


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine) as session:
        yield session


# Dependencies that never block are `async def`: FastAPI runs a plain `def` dependency in
# the thread pool, a hop that costs more than the work they do.
async def get_search_index(request: Request) -> SearchIndex:
    return request.app.state.search_index


async def get_auth(request: Request) -> AuthSettings:
    return request.app.state.auth


SessionDep = Annotated[Session, Depends(get_session)]
SearchIndexDep = Annotated[SearchIndex, Depends(get_search_index)]
AuthDep = Annotated[AuthSettings, Depends(get_auth)]

_bearer = HTTPBearer(auto_error=False, description="The token from /v0/user/login")


async def current_user_id(
    auth: AuthDep,
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
        return user_id_from_token(raw, auth)
    except InvalidToken as error:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(error), headers={"WWW-Authenticate": "Bearer"}
        ) from error


CurrentUserId = Annotated[str, Depends(current_user_id)]


async def viewer_id(
    auth: AuthDep,
    token: Annotated[str | None, Header(include_in_schema=False)] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str | None:
    """Who asks, if a valid token says so; None for anyone else (public reads)."""
    raw = presented_token(token, authorization)
    try:
        return user_id_from_token(raw, auth) if raw else None
    except InvalidToken:
        return None


ViewerId = Annotated[str | None, Depends(viewer_id)]


def current_user(session: SessionDep, user_id: CurrentUserId) -> User:
    user = session.scalar(select(User).where(User.id == user_id))
    if user is None or user.deactivated:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the user no longer exists")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
