"""Who is calling the API: through the proxies it trusts (AUTH_TRUSTED_PROXIES: the A/B
test proxy and the ingress controller in a deployment), see mlsys.common.serving."""

from fastapi import Request

from mlsys.common.serving import forwarded_client, within


def _peer(request: Request) -> str | None:
    return request.client.host if request.client else None


def from_trusted_proxy(request: Request) -> bool:
    """Whether a proxy the API trusts sent the request."""
    return within(_peer(request), request.app.state.auth.trusted_proxies)


def client_address(request: Request) -> str | None:
    """The client's address; None when a trusted proxy named nobody."""
    forwarded = ",".join(request.headers.getlist("x-forwarded-for"))
    return forwarded_client(_peer(request), forwarded, request.app.state.auth.trusted_proxies)
