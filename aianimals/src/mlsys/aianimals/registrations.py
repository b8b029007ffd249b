"""Sign-ups confirmed by a mailed link, so that registering reveals no one's address.

The API stores a sign-up (`Registration`) and announces it (`Topic.user_registered`)
whatever the address; its answer is the same for every address. The account mailer
(`python -m mlsys.batch account-mail`) then mails the address: a confirmation link, or,
where the address already has an account, a note saying so (and no link). The account is
made when the link's token comes back (`POST /v0/user/verify`); until then nobody can log
in with the password given, and the handle stays reserved for the sign-up's lifetime
whatever the address, so neither a login nor a handle's availability tells anything."""

import hashlib
import secrets
from datetime import UTC, datetime
from email.message import EmailMessage

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import Session

from mlsys.aianimals.mail import send_mail
from mlsys.aianimals.messages import Message
from mlsys.aianimals.settings import MailSettings
from mlsys.aianimals.tables import Registration, User
from mlsys.common.logging import get_logger

log = get_logger(__name__)

VERIFY_FRAGMENT = "verify"  # the web client reads `#verify=<token>` from its address


def token_hash(token: str) -> str:
    """What is stored of a link's token: a leaked table opens no account."""
    return hashlib.sha256(token.encode()).hexdigest()


def forget_expired(session: Session) -> None:
    """Expired sign-ups free their handle names."""
    session.execute(delete(Registration).where(Registration.expires_at <= datetime.now(UTC)))


def mail_registrations(engine: Engine, settings: MailSettings, batch: list[Message]) -> None:
    """The account mailer's handler: one mail per sign-up announced in `batch`.

    Each sign-up is mailed once: a redelivered message whose mail went out is skipped; one
    whose sending failed gets a new token (the stored hash replaced before sending), so
    only the last link mailed works."""
    for message in batch:
        _mail_one(engine, settings, message.payload["registration_id"])


def _mail_one(engine: Engine, settings: MailSettings, registration_id: str) -> None:
    now = datetime.now(UTC)
    with Session(engine) as session:
        registration = session.get(Registration, registration_id)
        if registration is None or registration.mailed_at or registration.expires_at <= now:
            return  # confirmed, mailed already, or expired: nothing to send
        known = session.scalar(
            select(User.id).where(
                func.lower(User.email_address) == func.lower(registration.email_address)
            )
        )
        token = None if known else secrets.token_urlsafe(32)
        registration.token_hash = token_hash(token) if token else None
        address, handle = registration.email_address, registration.handle_name
        session.commit()  # the link works before the mail can arrive
    send_mail(settings.url.get_secret_value(), _mail(settings, address, handle, token))
    with engine.begin() as connection:
        connection.execute(
            update(Registration).where(Registration.id == registration_id).values(mailed_at=now)
        )
    log.info("registration=%s mailed", registration_id)


def _mail(settings: MailSettings, address: str, handle: str, token: str | None) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"] = settings.sender, address
    if token is None:
        message["Subject"] = "AIAnimals: this address already has an account"
        message.set_content(
            f"Someone asked to sign up to AIAnimals as {handle!r} with this address, which "
            "already has an account. No account was made. If it was you, log in with your "
            "account (or change its password once logged in); otherwise ignore this mail."
        )
    else:
        link = f"{settings.web_client_url}#{VERIFY_FRAGMENT}={token}"
        message["Subject"] = "AIAnimals: confirm your address"
        message.set_content(
            f"Open this link to confirm your address and finish signing up as {handle!r}:\n\n"
            f"{link}\n\nThe link works for {settings.registration_hours:g} hours. If you did "
            "not sign up, ignore this mail: no account is made without it."
        )
    return message
