"""How every HTTP server of the platform runs on uvicorn, how it refuses a body before
reading it, and who a request came from.

A request's client is the address that connected, unless that address is a proxy the
server is configured to trust; then it is the nearest address in X-Forwarded-For, read
from the right (each proxy appends the address that called it), that is not a trusted
proxy itself. What an untrusted peer claims about others is ignored."""

import json
from collections.abc import Callable, Iterable
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import TypedDict

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

Networks = tuple[IPv4Network | IPv6Network, ...]


# uvicorn believes X-Forwarded-For from 127.0.0.1 unless told not to, so any client on the
# same host (a sidecar, a port-forward, a proxy passing the header on) picks the address
# it is seen from. Every server sees the peer as it connected, and resolves forwarded
# addresses itself (forwarded_client), from the proxies it is configured to trust.
class UvicornOptions(TypedDict):
    proxy_headers: bool
    server_header: bool


UVICORN_OPTIONS = UvicornOptions(proxy_headers=False, server_header=False)


def networks(text: str) -> Networks:
    """Addresses or networks, comma separated ("" is none); ValueError names a bad one."""
    return tuple(ip_network(part.strip()) for part in text.split(",") if part.strip())


def within(address: str | None, trusted: Networks) -> bool:
    try:
        parsed = ip_address(address or "")
    except ValueError:
        return False
    return any(parsed in network for network in trusted)


def forwarded_client(peer: str | None, forwarded_for: str, trusted: Networks) -> str | None:
    """The client of a request (see the module): None when a trusted proxy names nobody,
    or names something that is not an address."""
    if not within(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    while hops:
        hop = hops.pop()
        try:
            ip_address(hop)
        except ValueError:
            return None  # a proxy we trust wrote nonsense: nobody to count
        if not within(hop, trusted):
            return hop
    return None


class _BodyTooLarge(HTTPException):
    """An HTTPException, so that FastAPI, which turns any other error while it parses a
    body into a 400, answers it as the 413 it is."""

    def __init__(self, limit: int):
        super().__init__(413, f"the request body is over {limit} bytes")


class BodyLimit:
    """Pure ASGI: a request body over `limit(method, path)` bytes is a 413, by its
    Content-Length before anything is read, and while it streams in (a body without one,
    or lying about it). What is over the limit is never read: a route (FastAPI parses a
    body before it solves any dependency) never holds it."""

    def __init__(self, app: ASGIApp, limit: Callable[[str, str], int]):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope["method"], scope["path"])
        length = Headers(scope=scope).get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await answer(send, 413, f"the request body is over {limit} bytes")
            return
        received, started = 0, False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def send_and_note_start(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, send_and_note_start)
        except _BodyTooLarge as error:
            if started:
                raise
            await answer(send, 413, error.detail)


async def answer(
    send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """A JSON error answered from ASGI middleware, as FastAPI's HTTPException shapes it;
    the connection closes, as the rest of the body is not read."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"),
                (b"connection", b"close"),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
