from datetime import timedelta
from typing import Annotated
from uuid import uuid4

from fastapi import APIRouter, Body, HTTPException, Request, Response, status
from sqlalchemy import ColumnElement, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session

from mlsys.aianimals.messages import Topic, add_to_outbox
from mlsys.aianimals.passwords import hash_password, verify_password
from mlsys.aianimals.registrations import forget_expired, token_hash
from mlsys.aianimals.tables import Animal, Registration, User
from mlsys.api.animals import now
from mlsys.api.clients import client_address
from mlsys.api.deps import ActiveUsersDep, AuthDep, CurrentUser, MailDep, SessionDep
from mlsys.api.schemas import (
    LoginRequest,
    LoginResponse,
    PasswordChange,
    PasswordConfirmation,
    RegistrationPending,
    UserCreate,
    UserPublic,
    Verification,
    errors,
)
from mlsys.api.security import create_token
from mlsys.common.logging import get_logger

log = get_logger(__name__)
router = APIRouter(prefix="/v0/user", tags=["user"])
HANDLE_TAKEN = "this handle name is already taken"


def _too_many_failures(request: Request, session: Session, account: str) -> None:
    """429 with Retry-After while the account or the client has failed too often."""
    throttle = request.app.state.login_throttle
    wait = throttle.retry_after(session.connection(), account, client_address(request))
    if wait:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"too many failed logins: try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def _same_text(column: Mapped[str], value: str) -> ColumnElement[bool]:
    """`column` equals `value` whatever the case (what the unique indexes compare)."""
    return func.lower(column) == func.lower(value)


@router.post("/login", response_model=LoginResponse, responses=errors(401, 429))
def login(
    request: Request,
    session: SessionDep,
    auth: AuthDep,
    credentials: Annotated[LoginRequest, Body()],
) -> LoginResponse:
    """Log in with a handle name or an email address (either in any case) and the
    password; returns a token to send in the `token` header (or as `Authorization:
    Bearer`). After too many failures for an account or from a client, answers 429 with
    Retry-After until the window ends."""
    if credentials.handle_name is not None:
        identifier = _same_text(User.handle_name, credentials.handle_name)
    else:
        identifier = _same_text(User.email_address, credentials.email_address or "")
    user = session.scalar(select(User).where(identifier))
    # One count per account however it is named (handle or address, any case the database
    # folds to it), so no spelling buys more guesses.
    typed = (credentials.handle_name or credentials.email_address or "").casefold()
    account = user.id if user is not None else f"unknown:{typed}"
    _too_many_failures(request, session, account)
    # The hash is verified even for unknown users, so timing tells nobody who exists.
    valid = verify_password(credentials.password, user.password_hash if user else None)
    throttle = request.app.state.login_throttle
    if not valid or user is None or user.deactivated:
        throttle.failed(session.connection(), account, client_address(request))
        session.commit()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password")
    answer = LoginResponse(user_id=user.id, token=create_token(user.id, user.token_version, auth))
    throttle.succeeded(session.connection(), account)
    session.commit()
    return answer


@router.post(
    "",
    response_model=RegistrationPending,
    status_code=status.HTTP_202_ACCEPTED,
    responses=errors(409),
)
def register(session: SessionDep, mail: MailDep, user_create: UserCreate) -> RegistrationPending:
    """Sign up: a link to confirm the address is mailed to it, and the account is made
    when the link comes back (`POST /v0/user/verify`); the password is stored as an
    Argon2id hash. The answer is the same whether the address is new or already has an
    account (its owner is mailed a note instead of a link), so signing up tells nobody
    whose address is known. A handle name in use, or held by a sign-up still waiting for
    its link, answers 409 (handles are public: every post shows its owner's); handles
    compare whatever their case."""
    forget_expired(session)
    handle = _same_text(User.handle_name, user_create.handle_name)
    if session.scalar(select(User.id).where(handle)) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, HANDLE_TAKEN)
    created = now()
    registration = Registration(
        id=uuid4().hex,
        handle_name=user_create.handle_name,
        email_address=user_create.email_address,
        password_hash=hash_password(user_create.password),
        age=user_create.age,
        gender=user_create.gender,
        created_at=created,
        expires_at=created + timedelta(hours=mail.registration_hours),
    )
    answer = RegistrationPending.model_validate(registration, from_attributes=True)
    session.add(registration)
    add_to_outbox(
        session.connection(), Topic.user_registered, [{"registration_id": registration.id}]
    )
    try:
        session.commit()
    except IntegrityError as error:  # a sign-up for the same handle won the race
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, HANDLE_TAKEN) from error
    return answer


@router.post(
    "/verify",
    response_model=UserPublic,
    status_code=status.HTTP_201_CREATED,
    responses=errors(404, 409),
)
def verify(session: SessionDep, verification: Annotated[Verification, Body()]) -> UserPublic:
    """Confirm an address with the token of the link mailed at sign-up: the account is
    made, and its handle name and password log in from now on. A token unknown, used
    already or expired answers 404; an address that got an account meanwhile, 409."""
    registration = session.scalar(
        select(Registration).where(
            Registration.token_hash == token_hash(verification.token),
            Registration.expires_at > now(),
        )
    )
    if registration is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this link is unknown or has expired")
    user = User(
        id=uuid4().hex,
        handle_name=registration.handle_name,
        email_address=registration.email_address,
        password_hash=registration.password_hash,
        age=registration.age,
        gender=registration.gender,
        deactivated=False,
        created_at=now(),
        token_version=0,
    )
    answer = UserPublic.model_validate(user, from_attributes=True)  # before commit expires it
    session.delete(registration)
    session.add(user)
    try:
        session.commit()
    except IntegrityError as error:  # only the link's holder learns this: the address's owner
        session.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, "this address has an account already: log in"
        ) from error
    return answer


def _revoke_tokens(session: SessionDep, user: User, **changes) -> int:
    """Apply `changes` to the user and bump the token version (every token issued so far
    stops working); returns the new version."""
    version = session.scalar(
        update(User)
        .where(User.id == user.id)
        .values(token_version=User.token_version + 1, **changes)
        .returning(User.token_version)
    )
    assert version is not None  # the row was read in this request
    return version


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401))
def logout(session: SessionDep, users: ActiveUsersDep, user: CurrentUser) -> Response:
    """Log out everywhere: every token issued to the user so far stops working."""
    _revoke_tokens(session, user)
    session.commit()
    users.forget(user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _check_password(request: Request, session: Session, user: User, password: str) -> None:
    """401 unless `password` is the user's; failures count as failed logins."""
    _too_many_failures(request, session, user.id)
    if not verify_password(password, user.password_hash):
        connection = session.connection()
        request.app.state.login_throttle.failed(connection, user.id, client_address(request))
        session.commit()
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong password")


@router.put("/password", response_model=LoginResponse, responses=errors(401, 429))
def change_password(
    request: Request,
    session: SessionDep,
    auth: AuthDep,
    users: ActiveUsersDep,
    user: CurrentUser,
    change: Annotated[PasswordChange, Body()],
) -> LoginResponse:
    """Change the password (the current one is asked again). Every earlier token stops
    working; the answer carries a new one."""
    _check_password(request, session, user, change.password)
    version = _revoke_tokens(session, user, password_hash=hash_password(change.new_password))
    session.commit()
    users.forget(user.id)
    return LoginResponse(user_id=user.id, token=create_token(user.id, version, auth))


@router.post("/deactivate", status_code=status.HTTP_204_NO_CONTENT, responses=errors(401, 429))
def deactivate(
    request: Request,
    session: SessionDep,
    users: ActiveUsersDep,
    user: CurrentUser,
    confirmation: Annotated[PasswordConfirmation, Body()],
) -> Response:
    """Deactivate the account (the password is asked again): its tokens stop working, it
    cannot log in, and its posts leave the search (through `animal.updated` messages,
    committed with the change)."""
    _check_password(request, session, user, confirmation.password)
    _revoke_tokens(session, user, deactivated=True)
    posts = session.scalars(
        update(Animal)
        .where(Animal.user_id == user.id, Animal.deactivated.is_(False))
        .values(deactivated=True, updated_at=now())
        .returning(Animal.id)
    ).all()
    add_to_outbox(session.connection(), Topic.animal_updated, [{"animal_id": p} for p in posts])
    session.commit()
    users.forget(user.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
