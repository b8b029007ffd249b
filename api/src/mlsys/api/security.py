"""Expiring JWTs (HS256) for the app's `token` header and `Authorization: Bearer`."""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt
from fastapi.security.utils import get_authorization_scheme_param

from mlsys.aianimals.settings import AuthSettings

ALGORITHM = "HS256"


class InvalidToken(ValueError):
    pass


def create_token(user_id: str, settings: AuthSettings) -> str:
    now = datetime.now(UTC)
    claims = {"sub": user_id, "iat": now, "exp": now + timedelta(minutes=settings.token_minutes)}
    return jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm=ALGORITHM)


def presented_token(token: str | None, authorization: str | None) -> str | None:
    """The token a request presents: the `token` header (what the app sends), else
    `Authorization: Bearer ...` (Swagger, curl)."""
    if token:
        return token
    scheme, credentials = get_authorization_scheme_param(authorization)
    return credentials if scheme.lower() == "bearer" and credentials else None


def authenticated(headers: Mapping[str, str], settings: AuthSettings) -> bool:
    """Whether a request presents a valid token (without a database query)."""
    raw = presented_token(headers.get("token"), headers.get("authorization"))
    if raw is None:
        return False
    try:
        user_id_from_token(raw, settings)
    except InvalidToken:
        return False
    return True


def user_id_from_token(token: str, settings: AuthSettings) -> str:
    """The user a token was issued to; raises InvalidToken if forged, malformed or expired."""
    try:
        user_id, expires = _verified(token, settings.secret_key.get_secret_value())
    except jwt.ExpiredSignatureError as error:
        raise InvalidToken("the token has expired: log in again") from error
    except jwt.InvalidTokenError as error:
        raise InvalidToken("the token is not valid") from error
    if expires <= datetime.now(UTC).timestamp():  # a remembered token can expire since
        raise InvalidToken("the token has expired: log in again")
    return user_id


@lru_cache(maxsize=65_536)
def _verified(token: str, secret: str) -> tuple[str, float]:
    """Signature and claims checked once per token (a client sends the same token with
    every request); only valid tokens are remembered, as failures raise."""
    claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "exp"]})
    return claims["sub"], float(claims["exp"])
