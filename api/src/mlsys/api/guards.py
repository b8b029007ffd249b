"""What every request passes before a route sees it: a body limit enforced before the
body is read (by its Content-Length, and while it streams in), the token of an upload
checked before the upload is read, and `X-Content-Type-Options: nosniff` on every answer.

A route's limit is looked up by method and path: uploads get the photo limit, every other
body the JSON limit. The web client's pages get a Content-Security-Policy and are never
framed. FastAPI reads and parses a body before it solves a route's
dependencies, so these checks cannot live in the routes."""

import json
from functools import cache
from urllib.parse import urlsplit

from sqlalchemy.exc import OperationalError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlsys.aianimals.photos import MAX_UPLOAD_BYTES
from mlsys.aianimals.storage import url_of
from mlsys.api.security import signed_claims

JSON_BODY_BYTES = 64 * 1024
UPLOAD_BODY_BYTES = MAX_UPLOAD_BYTES
# Headers that carry a token: two of one would let a proxy and the API read different ones.
CREDENTIALS = ("token", "authorization")
UPLOADS = {("POST", "/v0/animal")}  # multipart routes: the token is checked first


async def _accepted(headers: Headers, scope: Scope) -> bool:
    """Whether the request's token is valid and current (its route checks it again)."""
    state = scope["app"].state
    claims = signed_claims(headers, state.auth)
    return claims is not None and await state.users.accept(claims)


WEB_CLIENT = "/app"


@cache
def web_client_headers() -> tuple[tuple[bytes, bytes], ...]:
    """The web client's pages: scripts, styles and calls from the API alone (no inline
    script, so an injected one does not run), photos from where they are served, and never
    inside another site's frame (clickjacking)."""
    photos = urlsplit(url_of(""))
    images = f" {photos.scheme}://{photos.netloc}" if photos.netloc else ""
    policy = (
        "default-src 'self'; img-src 'self' data:" + images + "; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return (
        (b"content-security-policy", policy.encode()),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"same-origin"),
    )


class BodyTooLarge(Exception):
    pass


def body_limit(method: str, path: str) -> int:
    return UPLOAD_BODY_BYTES if (method, path) in UPLOADS else JSON_BODY_BYTES


class RequestGuard:
    """Pure ASGI: no per-request task, and nothing is read that the limit refuses."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if any(len(headers.getlist(name)) > 1 for name in CREDENTIALS):
            await _answer(send, 400, "send one credential: one token or Authorization header")
            return
        limit = body_limit(scope["method"], scope["path"])
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _answer(send, 413, f"the request body is over {limit} bytes")
            return
        if (scope["method"], scope["path"]) in UPLOADS:
            try:
                accepted = await _accepted(headers, scope)
            except OperationalError:
                await _answer(send, 503, "the database is unavailable, try again")
                return
            if not accepted:
                await _answer(send, 401, "log in first: send a current token from /v0/user/login")
                return
        received, started = 0, False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # a body without (or lying about) its length
                    raise BodyTooLarge
            return message

        page = scope["path"].startswith(WEB_CLIENT)

        async def send_without_sniffing(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-content-type-options", b"nosniff"),
                    *(web_client_headers() if page else ()),
                ]
            await send(message)

        try:
            await self.app(scope, limited_receive, send_without_sniffing)
        except BodyTooLarge:
            if started:
                raise
            await _answer(send_without_sniffing, 413, f"the request body is over {limit} bytes")


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"),
                (b"connection", b"close"),  # the rest of the body is not read
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
