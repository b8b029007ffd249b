"""How every HTTP server of the platform runs on uvicorn, and who a request came from.

A request's client is the address that connected, unless that address is a proxy the
server is configured to trust; then it is the nearest address in X-Forwarded-For, read
from the right (each proxy appends the address that called it), that is not a trusted
proxy itself. What an untrusted peer claims about others is ignored."""

from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from typing import TypedDict

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
