"""Sign-up mails (issue 32, item 13): delivered to a real SMTP server (aiosmtpd) or into a
folder, once per sign-up, retried with a fresh link when sending fails."""

import email
import email.policy
from datetime import UTC, datetime, timedelta

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from mlsys.aianimals.database import get_engine, upgrade
from mlsys.aianimals.mail import send_mail
from mlsys.aianimals.messages import Message
from mlsys.aianimals.registrations import mail_registrations, token_hash
from mlsys.aianimals.settings import MailSettings, mail_settings
from mlsys.aianimals.tables import Registration, User
from tests.helpers.http import link_token, mailed
from tests.helpers.services import free_port


class Inbox:
    """An aiosmtpd handler keeping what it was sent."""

    def __init__(self):
        self.mails: list = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


def only_mailer(server, session, envelope, mechanism, auth_data):
    good = isinstance(auth_data, LoginPassword) and auth_data.password == b"mail secret"
    return AuthResult(success=good and auth_data.login == b"mailer")


@pytest.fixture
def smtp_server():
    inbox, port = Inbox(), free_port()
    controller = Controller(
        inbox, hostname="127.0.0.1", port=port, authenticator=only_mailer,
        auth_require_tls=False,  # loopback only; TLS is the SMTP library's, tested upstream
    )  # fmt: skip
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
def engine():
    engine = get_engine()
    upgrade(engine)
    return engine


def sign_up(engine, address: str, handle: str = "new_cat") -> str:
    now = datetime.now(UTC)
    registration = {"id": handle.ljust(32, "0"), "handle_name": handle, "email_address": address,
                    "password_hash": "x", "age": 30, "gender": 1, "created_at": now,
                    "expires_at": now + timedelta(hours=1)}  # fmt: skip
    with engine.begin() as connection:
        connection.execute(Registration.__table__.insert().values(**registration))
    return registration["id"]


def test_a_sign_up_is_mailed_through_smtp_once_with_a_link_that_matches(engine, smtp_server):
    inbox, port = smtp_server
    settings = MailSettings(url=SecretStr(f"smtp://mailer:mail%20secret@127.0.0.1:{port}"))
    registration = sign_up(engine, "new@example.com")
    message = Message("1", "user.registered", {"registration_id": registration})
    mail_registrations(engine, settings, [message])
    mail_registrations(engine, settings, [message])  # redelivered: not mailed again
    assert len(inbox.mails) == 1 and inbox.mails[0]["To"] == "new@example.com"
    token = link_token(inbox.mails[0])
    assert inbox.mails[0].get_content().count(f"{settings.web_client_url}#verify={token}") == 1
    with engine.connect() as connection:
        stored = connection.scalar(Registration.__table__.select().with_only_columns(
            Registration.token_hash))  # fmt: skip
    assert stored == token_hash(token) != token


def test_a_refused_login_or_an_unreachable_server_is_retried_with_a_new_link(
    engine, smtp_server, tmp_path, monkeypatch
):
    inbox, port = smtp_server
    # After refusing PLAIN, aiosmtpd leaves smtplib's next mechanism (LOGIN) unanswered:
    # the refusal then ends in the client's timeout, here a short one.
    monkeypatch.setattr("mlsys.aianimals.mail.SMTP_TIMEOUT_SECONDS", 2)
    registration = sign_up(engine, "new@example.com")
    message = Message("1", "user.registered", {"registration_id": registration})
    for url in (f"smtp://mailer:wrong@127.0.0.1:{port}", f"smtp://127.0.0.1:{free_port()}"):
        with pytest.raises(OSError):  # SMTPAuthenticationError is one; the consumer retries
            mail_registrations(engine, MailSettings(url=SecretStr(url)), [message])
    with engine.connect() as connection:
        first = connection.scalar(Registration.__table__.select().with_only_columns(
            Registration.token_hash))  # fmt: skip
    folder = MailSettings(url=SecretStr((tmp_path / "mail").as_uri()))
    mail_registrations(engine, folder, [message])
    token = link_token(mailed("new@example.com", tmp_path / "mail"))
    assert token_hash(token) != first  # the link of the failed attempt would not work
    assert not inbox.mails


def test_an_address_with_an_account_is_told_so_and_gets_no_link(engine, tmp_path):
    with engine.begin() as connection:
        connection.execute(User.__table__.insert().values(
            id="u" * 32, handle_name="owner", email_address="Owner@example.com",
            password_hash="x", age=30, gender=1, deactivated=False,
            created_at=datetime.now(UTC), token_version=0,
        ))  # fmt: skip
    registration = sign_up(engine, "OWNER@example.com")
    settings = MailSettings(url=SecretStr((tmp_path / "mail").as_uri()))
    mail_registrations(engine, settings, [Message("1", "user.registered",
                                                  {"registration_id": registration})])  # fmt: skip
    note = mailed("owner@example.com", tmp_path / "mail")
    assert link_token(note) is None and "already has an account" in note["Subject"]
    assert [p.name for p in (tmp_path / "mail").iterdir() if p.name.startswith(".")] == []


def test_mail_settings_refuse_an_empty_url_outside_development(monkeypatch):
    monkeypatch.setenv("MLSYS_ENVIRONMENT", "production")
    monkeypatch.delenv("MAIL_URL", raising=False)
    with pytest.raises(RuntimeError, match="MAIL_URL"):
        mail_settings()
    with pytest.raises(ValueError, match="neither smtp"):
        send_mail("http://example.com/", email.message.EmailMessage())
