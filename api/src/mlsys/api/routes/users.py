from typing import Annotated
from uuid import uuid4

from fastapi import APIRouter, Body, HTTPException, Request, status
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from mlsys.aianimals.passwords import hash_password, verify_password
from mlsys.aianimals.tables import User
from mlsys.api.animals import now
from mlsys.api.deps import AuthDep, SessionDep
from mlsys.api.schemas import LoginRequest, LoginResponse, UserCreate, UserPublic, errors
from mlsys.api.security import create_token

router = APIRouter(prefix="/v0/user", tags=["user"])


@router.post("/login", response_model=LoginResponse, responses=errors(401, 429))
def login(
    request: Request,
    session: SessionDep,
    auth: AuthDep,
    credentials: Annotated[LoginRequest, Body()],
) -> LoginResponse:
    """Log in with a handle name or an email address and the password; returns a token to
    send in the `token` header (or as `Authorization: Bearer`). After too many failures for
    an account or from a client, answers 429 with Retry-After until the window ends."""
    throttle = request.app.state.login_throttle
    account = credentials.handle_name or credentials.email_address or ""
    client = request.client.host if request.client else "unknown"
    wait = throttle.retry_after(account, client)
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed logins: try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )
    user = session.scalar(
        select(User).where(
            or_(
                User.handle_name == credentials.handle_name,
                User.email_address == credentials.email_address,
            )
        )
    )
    # The hash is verified even for unknown users, so timing tells nobody who exists.
    valid = verify_password(credentials.password, user.password_hash if user else None)
    if not valid or user is None or user.deactivated:
        throttle.failed(account, client)
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password")
    throttle.succeeded(account, client)
    return LoginResponse(user_id=user.id, token=create_token(user.id, auth))


@router.post(
    "", response_model=UserPublic, status_code=status.HTTP_201_CREATED, responses=errors(409)
)
def register(session: SessionDep, user_create: UserCreate) -> UserPublic:
    """Register a new user (the password is stored as an Argon2id hash)."""
    user = User(
        id=uuid4().hex,
        handle_name=user_create.handle_name,
        email_address=user_create.email_address,
        password_hash=hash_password(user_create.password),
        age=user_create.age,
        gender=user_create.gender,
        deactivated=False,
        created_at=now(),
    )
    session.add(user)
    try:
        session.commit()
    except IntegrityError as error:
        session.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, "this handle name or email address is already registered"
        ) from error
    return UserPublic.model_validate(user, from_attributes=True)
