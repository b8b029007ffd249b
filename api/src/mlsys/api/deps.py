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
from mlsys.aianimals.settings import AuthSettings, MailSettings
from mlsys.aianimals.tables import User
from mlsys.api.active_users import ActiveUsers
from mlsys.api.ranking import Ranking
from mlsys.api.security import InvalidToken, TokenClaims, claims_of, presented_token
from mlsys.api.similar import SimilarImages
from mlsys.api.similar_words import LoadedWords
from mlsys.common.tracking import ChampionWatch


def get_session(request: Request) -> Iterator[Session]:
    with Session(request.app.state.engine) as session:
        yield session


# Dependencies that never block are `async def`: FastAPI runs a plain `def` dependency in
# the thread pool, a hop that costs more than the work they do.
async def get_search_index(request: Request) -> SearchIndex:
    return request.app.state.search_index


async def get_auth(request: Request) -> AuthSettings:
    return request.app.state.auth


async def get_mail(request: Request) -> MailSettings:
    return request.app.state.mail


async def get_ranking(request: Request) -> Ranking:
    return request.app.state.ranking


async def get_similar_images(request: Request) -> SimilarImages:
    return request.app.state.similar_images


async def get_similar_words(request: Request) -> ChampionWatch[LoadedWords]:
    return request.app.state.similar_words


SessionDep = Annotated[Session, Depends(get_session)]
SimilarImagesDep = Annotated[SimilarImages, Depends(get_similar_images)]
SimilarWordsDep = Annotated[ChampionWatch[LoadedWords], Depends(get_similar_words)]
SearchIndexDep = Annotated[SearchIndex, Depends(get_search_index)]
RankingDep = Annotated[Ranking, Depends(get_ranking)]
AuthDep = Annotated[AuthSettings, Depends(get_auth)]
MailDep = Annotated[MailSettings, Depends(get_mail)]

_bearer = HTTPBearer(auto_error=False, description="The token from /v0/user/login")
_REVOKED = "the token was revoked, or its user deactivated: log in again"


async def get_active_users(request: Request) -> ActiveUsers:
    return request.app.state.users


ActiveUsersDep = Annotated[ActiveUsers, Depends(get_active_users)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": "Bearer"}
    )


async def token_claims(
    auth: AuthDep,
    users: ActiveUsersDep,
    token: Annotated[
        str | None, Header(description="The token from /v0/user/login (what the app sends)")
    ] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
) -> TokenClaims:
    """The logged-in user's claims, from the `token` header or `Authorization: Bearer`:
    signed, unexpired, not revoked, and the user still active."""
    raw = token or (bearer.credentials if bearer else None)
    if not raw:
        raise _unauthorized(
            "log in first: send the token from /v0/user/login in the `token` header"
        )
    try:
        claims = claims_of(raw, auth)
    except InvalidToken as error:
        raise _unauthorized(str(error)) from error
    if not await users.accept(claims):
        raise _unauthorized(_REVOKED)
    return claims


CurrentClaims = Annotated[TokenClaims, Depends(token_claims)]


async def current_user_id(claims: CurrentClaims) -> str:
    return claims.user_id


CurrentUserId = Annotated[str, Depends(current_user_id)]


async def viewer_id(
    auth: AuthDep,
    users: ActiveUsersDep,
    token: Annotated[str | None, Header(include_in_schema=False)] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> str | None:
    """Who asks, if a valid, current token says so; None for anyone else (public reads)."""
    raw = presented_token(token, authorization)
    try:
        claims = claims_of(raw, auth) if raw else None
    except InvalidToken:
        return None
    return claims.user_id if claims and await users.accept(claims) else None


ViewerId = Annotated[str | None, Depends(viewer_id)]


def current_user(session: SessionDep, claims: CurrentClaims) -> User:
    """The logged-in user's row, read in the request's session (writes change it), checked
    again against it: the remembered status may be seconds old."""
    user = session.scalar(select(User).where(User.id == claims.user_id))
    if user is None or user.deactivated or user.token_version != claims.version:
        raise _unauthorized(_REVOKED)
    return user


CurrentUser = Annotated[User, Depends(current_user)]
