"""The proxy as the app's way in (issue 32, items 1, 8, 9): it tells the API who called
and nobody else may; it refuses what the API could read differently than it does; it
bounds what it reads, and says 502 when the API is gone.

Clients are told apart by the loopback address they connect from (127.0.0.2, .3, ...)."""

import http.client
import json
from urllib.parse import urlparse

import httpx
import pytest

from mlsys.ab_test_proxy.proxy import create_app
from mlsys.aianimals.photos import MAX_UPLOAD_BYTES
from mlsys.common.serving import forwarded_client, networks
from tests.ab_test_proxy.test_proxy import experiment
from tests.helpers.http import ApiServer
from tests.helpers.services import free_port

pytestmark = pytest.mark.slow


def client_at(address: str, url: str) -> httpx.Client:
    return httpx.Client(
        base_url=url, transport=httpx.HTTPTransport(local_address=address), timeout=30
    )


@pytest.fixture
def api_behind_the_proxy(aianimals_home, monkeypatch):
    """The real API (local profile) trusting the proxy on 127.0.0.1, and the proxy."""
    monkeypatch.setenv("AUTH_TRUSTED_PROXIES", "127.0.0.1")
    monkeypatch.setenv("AUTH_LOGIN_FAILURES_PER_ACCOUNT", "3")
    monkeypatch.setenv("AUTH_LOGIN_FAILURES_PER_CLIENT", "6")
    from sqlalchemy import select

    from mlsys.aianimals.database import get_engine
    from mlsys.aianimals.tables import User

    with get_engine().connect() as connection:
        handles = connection.scalars(select(User.handle_name).limit(20)).all()
    with ApiServer() as api, ApiServer(create_app(experiment("user", upstream=api.url))) as proxy:
        yield proxy.url, api.url, handles


def failed_logins(client: httpx.Client, handles, headers=None) -> list[int]:
    return [
        client.post("/v0/user/login", json={"handle_name": h, "password": "guess"},
                    headers=headers).status_code
        for h in handles
    ]  # fmt: skip


def test_one_client_failing_locks_out_that_client_only(api_behind_the_proxy):
    """Before: every user reached the API from the proxy's address, so one client's
    failures locked everyone out."""
    proxy, _, handles = api_behind_the_proxy
    with client_at("127.0.0.2", proxy) as guesser, client_at("127.0.0.3", proxy) as user:
        assert failed_logins(guesser, handles[:6]) == [401] * 6
        attempt = {"handle_name": handles[6], "password": "password"}
        assert guesser.post("/v0/user/login", json=attempt).status_code == 429
        assert user.post("/v0/user/login", json=attempt).status_code == 200


def test_a_client_cannot_pick_the_address_it_is_counted_under(api_behind_the_proxy):
    """Before: the proxy passed the client's X-Forwarded-For on, and the API believed it."""
    proxy, api, handles = api_behind_the_proxy
    with client_at("127.0.0.4", proxy) as guesser:
        for i, handle in enumerate(handles[:6]):
            spoofed = {"x-forwarded-for": f"10.1.2.{i}", "forwarded": f"for=10.1.3.{i}"}
            assert failed_logins(guesser, [handle], spoofed) == [401]
        attempt = {"handle_name": handles[6], "password": "password"}
        assert guesser.post("/v0/user/login", json=attempt).status_code == 429
    # Straight to the API from an address it does not trust: the header is ignored too.
    with client_at("127.0.0.5", api) as guesser:
        for i, handle in enumerate(handles[7:13]):
            assert failed_logins(guesser, [handle], {"x-forwarded-for": f"10.1.4.{i}"}) == [401]
        attempt = {"handle_name": handles[13], "password": "password"}
        assert guesser.post("/v0/user/login", json=attempt).status_code == 429


def test_only_the_proxy_labels_access_logs(api_behind_the_proxy, aianimals_home):
    from sqlalchemy import text

    from mlsys.aianimals.database import get_engine

    proxy, api, _ = api_behind_the_proxy
    with client_at("127.0.0.6", proxy) as through, client_at("127.0.0.6", api) as direct:
        token = {"token": through.post("/v0/user/login", json={
            "handle_name": "dog_leigh", "password": "password"}).json()["token"]}  # fmt: skip
        animal = through.post("/v0/animal/search", json={}, headers=token).json()
        log = {"search_id": animal["search_id"], "animal_id": animal["results"][0]["id"],
               "action": "select", "model_name": "ranking:forged"}  # fmt: skip
        assert through.post("/v0/access_log", json=log, headers=token).status_code == 201
        forged = {**log, "search_id": "e" * 32}
        assert through.post("/v0/access_log", json=forged, headers=token).status_code == 201
        assert direct.post("/v0/access_log", json={**forged, "search_id": "d" * 32},
                           headers=token).status_code == 201  # fmt: skip
    with get_engine().connect() as connection:
        labels = dict(connection.execute(text(
            "SELECT search_id, model_name FROM access_logs WHERE search_id IN (:a, :b, :c)"),
            {"a": log["search_id"], "b": "e" * 32, "c": "d" * 32}).all())  # fmt: skip
    assert labels[log["search_id"]] in ("ranking:ranker", "ranking:likes")
    assert labels["e" * 32] is None and labels["d" * 32] is None


def test_metrics_are_not_served_to_the_app(api_behind_the_proxy):
    """Issue 32, item 17: /metrics was public, also through the proxy."""
    proxy, api, _ = api_behind_the_proxy
    with client_at("127.0.0.9", proxy) as app, client_at("127.0.0.9", api) as prometheus:
        assert app.get("/metrics").status_code == 404
        assert prometheus.get("/metrics").status_code == 200  # inside, not via a proxy
    assert httpx.get(f"{api}/metrics").status_code == 404  # from the trusted proxy's address


@pytest.fixture
def proxy_to_a_recorder():
    received = []

    def api(request: httpx.Request) -> httpx.Response:
        received.append(request)
        if request.url.path == "/app":
            return httpx.Response(307, headers={"location": "http://api.test/app/"})
        return httpx.Response(200, json={"search_id": "a" * 32, "hits": 0})

    app = create_app(experiment("user"), transport=httpx.MockTransport(api))
    with ApiServer(app) as server:
        yield server.url, received


def raw_request(url: str, method: str, path: str, headers: list[tuple[str, str]],
                body: bytes = b"") -> int:  # fmt: skip
    """As sent, byte for byte: httpx would normalise the path and merge the headers."""
    address = urlparse(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    connection.putrequest(method, path, skip_accept_encoding=True)
    if not any(name == "content-length" for name, _ in headers):
        headers = [*headers, ("content-length", str(len(body)))]
    for name, value in headers:
        connection.putheader(name, value)
    connection.endheaders(body)
    status = connection.getresponse().status
    connection.close()
    return status


def test_two_tokens_are_refused_by_the_proxy_and_the_api(proxy_to_a_recorder, api):
    """Before: the proxy drew the variant from the first token and forwarded the last."""
    proxy, received = proxy_to_a_recorder
    two = [("token", "h.e30.s"), ("token", "h.e30.t"), ("content-type", "application/json")]
    assert raw_request(proxy, "POST", "/v0/animal/search", two, b"{}") == 400
    both = [("token", "h.e30.s"), ("authorization", "Bearer a"), ("authorization", "Bearer b")]
    assert raw_request(proxy, "GET", "/v0/metadata", both) == 400
    assert received == []
    api_url = str(api.base_url)
    assert raw_request(api_url, "POST", "/v0/animal/search", two, b"{}") == 400


@pytest.mark.parametrize(
    "path", ["/v0/animal/./search", "/v0/animal/x/../search", "/v0//animal/search", "/v0/."]
)
def test_a_path_with_dot_or_empty_segments_is_refused(proxy_to_a_recorder, path):
    """Before: `/v0/animal/./search` reached the API's search outside the experiment."""
    proxy, received = proxy_to_a_recorder
    headers = [("content-type", "application/json")]
    assert raw_request(proxy, "POST", path, headers, b"{}") == 400
    assert received == []


def test_a_client_label_never_reaches_the_api(proxy_to_a_recorder):
    proxy, received = proxy_to_a_recorder
    with httpx.Client(base_url=proxy) as client:
        log = {"search_id": "b" * 32, "animal_id": "c" * 32, "action": "select",
               "model_name": "ranking:forged"}  # fmt: skip
        client.post("/v0/access_log", json=log)
    assert "model_name" not in json.loads(received[-1].content)


def test_bodies_are_bounded_and_odd_json_is_not_a_server_error(proxy_to_a_recorder):
    """Before: a 300 MB chunked body grew the proxy by 610 MB, then a 500; deeply nested
    JSON was a 500."""
    proxy, received = proxy_to_a_recorder

    def chunks():
        for _ in range(MAX_UPLOAD_BYTES // 65_536 + 2):
            yield b" " * 65_536  # no Content-Length: chunked

    with httpx.Client(base_url=proxy, timeout=30) as client:
        assert client.post("/v0/animal/search", content=chunks()).status_code == 413
        huge = [("content-length", str(MAX_UPLOAD_BYTES + 1))]
        assert raw_request(proxy, "POST", "/v0/animal", huge, b"x") == 413  # unread
        nested = b"[" * 100_000 + b"]" * 100_000
        answer = client.post("/v0/animal/search", content=nested,
                             headers={"content-type": "application/json"})  # fmt: skip
        assert answer.status_code < 500
    assert len(received) == 1  # only the nested one went on (the API answers it)


def test_an_unreachable_api_is_a_502():
    app = create_app(experiment("user", upstream=f"http://127.0.0.1:{free_port()}"))
    with ApiServer(app) as server, httpx.Client(base_url=server.url) as client:
        assert client.get("/v0/metadata").status_code == 502
        assert client.post("/v0/animal/search", json={}).status_code == 502


def test_behind_a_trusted_ingress_its_word_is_passed_on():
    received = []

    def api(request: httpx.Request) -> httpx.Response:
        received.append(request.headers.get_list("x-forwarded-for"))
        return httpx.Response(200, json={})

    app = create_app(experiment("user"), httpx.MockTransport(api), networks("127.0.0.7"))
    spoof = {"x-forwarded-for": "203.0.113.9"}
    with ApiServer(app) as server:
        with client_at("127.0.0.7", server.url) as ingress:
            ingress.get("/v0/metadata", headers=spoof)
        with client_at("127.0.0.8", server.url) as client:
            client.get("/v0/metadata", headers=spoof)
    assert received == [["203.0.113.9, 127.0.0.7"], ["127.0.0.8"]]


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("10.0.0.5", "1.2.3.4", "10.0.0.5"),  # an untrusted peer says what it likes
        ("127.0.0.1", "1.2.3.4", "1.2.3.4"),
        ("127.0.0.1", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # the left part is the client's word
        ("127.0.0.1", "1.2.3.4, 10.9.0.1", "1.2.3.4"),  # through two trusted proxies
        ("127.0.0.1", "", None),  # a trusted proxy that names nobody: nobody to count
        ("127.0.0.1", "1.2.3.4, not-an-address", None),
        (None, "1.2.3.4", None),
    ],
)
def test_the_client_is_read_from_the_right(peer, forwarded, client):
    assert forwarded_client(peer, forwarded, networks("127.0.0.1, 10.9.0.0/16")) == client


def test_a_redirect_does_not_reveal_the_apis_address(proxy_to_a_recorder):
    proxy, _ = proxy_to_a_recorder
    answer = httpx.get(f"{proxy}/app")
    assert answer.status_code == 307 and answer.headers["location"] == "/app/"


def test_the_proxy_passes_on_what_the_client_sent(api_behind_the_proxy):
    """Found by schemathesis through the proxy: a path with percent-encoded bytes that are
    no UTF-8 was a 500, a header value with a trailing space a 502 (the proxy decoded and
    encoded again what it should pass on). Both now answer as the API does."""
    proxy, api, _ = api_behind_the_proxy

    def answer(url: str, path: str, headers: dict) -> int:
        parsed = urlparse(url)
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        try:
            connection.request("GET", path, headers=headers)
            return connection.getresponse().status
        finally:
            connection.close()

    cases = [
        ("/v0/photos/%F2%8B%94%BF%1A%C2%A7", {}),
        ("/v0/like?animal_id=%FF", {"token": "not a token "}),
        ("/v0/user/me", {"authorization": "Bearer x ", "accept": "application/json"}),
    ]
    for path, headers in cases:
        through, direct = answer(proxy, path, headers), answer(api, path, headers)
        assert through == direct and through < 500, (path, through, direct)
