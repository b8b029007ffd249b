"""Sending mail: to an SMTP server, or as .eml files into a folder (development, tests)."""

import smtplib
import ssl
import uuid
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote, urlsplit

SMTP_TIMEOUT_SECONDS = 30


def send_mail(url: str, message: EmailMessage) -> None:
    """Deliver `message` where `url` (MAIL_URL) says; raises if it could not be handed on,
    so that the consumer retries it."""
    target = urlsplit(url)
    if target.scheme == "file":
        _write(Path(unquote(target.path)), message)
    elif target.scheme in ("smtp", "smtps"):
        _smtp(target.scheme == "smtps", target, message)
    else:
        raise ValueError(f"MAIL_URL: {target.scheme!r} is neither smtp, smtps nor file")


def _write(folder: Path, message: EmailMessage) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{uuid.uuid4().hex}.eml"
    partial = folder / f".{name}"  # renamed when complete: a reader never sees half a mail
    partial.write_bytes(bytes(message))
    partial.rename(folder / name)


def _smtp(tls: bool, target, message: EmailMessage) -> None:
    host, context = target.hostname or "localhost", ssl.create_default_context()
    if tls:
        server: smtplib.SMTP = smtplib.SMTP_SSL(
            host, target.port or 465, timeout=SMTP_TIMEOUT_SECONDS, context=context
        )
    else:
        server = smtplib.SMTP(host, target.port or 25, timeout=SMTP_TIMEOUT_SECONDS)
    with server:
        server.ehlo()
        if not tls and server.has_extn("starttls"):
            server.starttls(context=context)
        if target.username:
            server.login(unquote(target.username), unquote(target.password or ""))
        server.send_message(message)
