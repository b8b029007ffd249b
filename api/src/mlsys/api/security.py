"""Expiring JWTs (HS256) for the app's `token` header and `Authorization: Bearer`."""

from datetime import UTC, datetime, timedelta

import jwt

from mlsys.common.settings import auth_settings

ALGORITHM = "HS256"


class InvalidToken(ValueError):
    pass


def create_token(user_id: str) -> str:
    settings = auth_settings()
    now = datetime.now(UTC)
    claims = {"sub": user_id, "iat": now, "exp": now + timedelta(minutes=settings.token_minutes)}
    return jwt.encode(claims, settings.secret_key.get_secret_value(), algorithm=ALGORITHM)


def user_id_from_token(token: str) -> str:
    """The user a token was issued to; raises InvalidToken if forged, malformed or expired."""
    try:
        claims = jwt.decode(
            token,
            auth_settings().secret_key.get_secret_value(),
            algorithms=[ALGORITHM],
            options={"require": ["sub", "exp"]},
        )
    except jwt.ExpiredSignatureError as error:
        raise InvalidToken("the token has expired: log in again") from error
    except jwt.InvalidTokenError as error:
        raise InvalidToken("the token is not valid") from error
    return claims["sub"]
