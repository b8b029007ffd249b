"""Expiring JWTs (HS256) for the app's `token` header and `Authorization: Bearer`.

A token names its user and the user's token version when it was issued: bumping the
version (password change, deactivation, log-out everywhere) revokes every earlier token.
The signature is checked here; whether the version is still the user's, by
mlsys.api.active_users.
"""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple

import jwt
from fastapi.security.utils import get_authorization_scheme_param

from mlsys.aianimals.settings import AuthSettings

ALGORITHM = "HS256"


class InvalidToken(ValueError):
    pass


class TokenClaims(NamedTuple):
    user_id: str
    version: int


def create_token(user_id: str, version: int, settings: AuthSettings) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": user_id,
        "ver": version,
        "iat": now,
        "exp": now + timedelta(minutes=settings.token_minutes),
    }
    return jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm=ALGORITHM)


def presented_token(token: str | None, authorization: str | None) -> str | None:
    """The token a request presents: the `token` header (what the app sends), else
    `Authorization: Bearer ...` (Swagger, curl)."""
    if token:
        return token
    scheme, credentials = get_authorization_scheme_param(authorization)
    return credentials if scheme.lower() == "bearer" and credentials else None


def signed_claims(headers: Mapping[str, str], settings: AuthSettings) -> TokenClaims | None:
    """The claims of the validly signed, unexpired token a request presents, else None
    (without a database query: whether the token is revoked is not checked)."""
    raw = presented_token(headers.get("token"), headers.get("authorization"))
    if raw is None:
        return None
    try:
        return claims_of(raw, settings)
    except InvalidToken:
        return None


def claims_of(token: str, settings: AuthSettings) -> TokenClaims:
    """Who a token was issued to, and at which token version; raises InvalidToken if
    forged, malformed or expired."""
    try:
        claims, expires = _verified(token, settings.secret_key.get_secret_value())
    except jwt.ExpiredSignatureError as error:
        raise InvalidToken("the token has expired: log in again") from error
    except jwt.InvalidTokenError as error:
        raise InvalidToken("the token is not valid") from error
    if expires <= datetime.now(UTC).timestamp():  # a remembered token can expire since
        raise InvalidToken("the token has expired: log in again")
    return claims


@lru_cache(maxsize=65_536)
def _verified(token: str, secret: str) -> tuple[TokenClaims, float]:
    """Signature and claims checked once per token (a client sends the same token with
    every request); only valid tokens are remembered, as failures raise."""
    claims = jwt.decode(
        token, secret, algorithms=[ALGORITHM], options={"require": ["sub", "ver", "exp"]}
    )
    user_id, version = claims["sub"], claims["ver"]
    if not isinstance(user_id, str) or type(version) is not int:
        raise jwt.InvalidTokenError("sub must be a string and ver an integer")
    return TokenClaims(user_id, version), float(claims["exp"])
