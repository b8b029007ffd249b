"""What every request passes before a route sees it: a body limit enforced before the
body is read (by its Content-Length, and while it streams in), the token of an upload
checked before the upload is read, and `X-Content-Type-Options: nosniff` on every answer.

A route's limit is looked up by method and path: uploads get the photo limit, every other
body the JSON limit. The web client's pages get a Content-Security-Policy and are never
framed. FastAPI reads and parses a body before it solves a route's
dependencies, so these checks cannot live in the routes."""

from functools import cache
from urllib.parse import urlsplit

from sqlalchemy.exc import OperationalError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlsys.aianimals.photos import MAX_UPLOAD_BYTES
from mlsys.aianimals.storage import url_of
from mlsys.api.security import signed_claims
from mlsys.common.serving import answer

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


def body_limit(method: str, path: str) -> int:
    return UPLOAD_BODY_BYTES if (method, path) in UPLOADS else JSON_BODY_BYTES


class RequestGuard:
    """Pure ASGI: no per-request task. Inside `mlsys.common.serving.BodyLimit` with
    `body_limit`, so nothing is read that the limit refuses."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if any(len(headers.getlist(name)) > 1 for name in CREDENTIALS):
            await answer(send, 400, "send one credential: one token or Authorization header")
            return
        if (scope["method"], scope["path"]) in UPLOADS:
            try:
                accepted = await _accepted(headers, scope)
            except OperationalError:
                await answer(send, 503, "the database is unavailable, try again")
                return
            if not accepted:
                await answer(send, 401, "log in first: send a current token from /v0/user/login")
                return
        page = scope["path"].startswith(WEB_CLIENT)

        async def send_without_sniffing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-content-type-options", b"nosniff"),
                    *(web_client_headers() if page else ()),
                ]
            await send(message)

        await self.app(scope, receive, send_without_sniffing)
