"""Property-based run of the OpenAPI schema with schemathesis: every route, generated
requests (valid and invalid), no 5xx and no response that breaks the schema; on the local
profile (SQLite) and the services profile (PostgreSQL, Redis, RabbitMQ).

Each generated request is sent again with every text in it poisoned by what databases
and JSON trip over (issue 10, item 10): a NUL, a lone surrogate (JSON bodies only: a URL
cannot carry one), and non-ASCII text; those must not give a 5xx either.

CI runs 60 examples per operation (at least 1,000 requests per profile with the poisoned
copies); `make properties` runs 250 (PROPERTY_EXAMPLES), over 2,000 per profile.
"""

import json
import os
from collections.abc import Callable
from urllib.parse import quote

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.helpers.aianimals import services_deployment
from tests.helpers.http import ApiServer, login, serving_api

EXAMPLES_PER_OPERATION = int(os.environ.get("PROPERTY_EXAMPLES", "60"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
POISONS = ["\x00", "\ud83d", "ねこ🐈Ünïcödé"]


def poisoned(value, poison: str, encodable: bool):
    """`value` with every text in it carrying `poison`; where the text travels as UTF-8
    (a URL, a form), a lone surrogate cannot, so it is left out there."""
    if isinstance(value, str):
        return value if encodable and poison == "\ud83d" else value + poison
    if isinstance(value, dict):
        return {key: poisoned(item, poison, encodable) for key, item in value.items()}
    if isinstance(value, list):
        return [poisoned(item, poison, encodable) for item in value]
    return value


def send_poisoned(api, case, poison: str, headers: dict | None):
    """The case again with its texts poisoned. JSON is encoded here with `\\u` escapes,
    which carry a lone surrogate as JSON allows (the generator's client cannot)."""
    variant = case.derive(query=poisoned(case.query, poison, encodable=True))
    variant.path_parameters = poisoned(case.path_parameters, poison, encodable=True)
    if case.media_type != "application/json":
        if isinstance(case.body, dict):  # a form: its text fields
            variant.body = poisoned(case.body, poison, encodable=True)
        return variant.call(base_url=str(api.base_url).rstrip("/"), headers=headers, timeout=30)
    body = json.dumps(poisoned(case.body, poison, encodable=False))  # ensure_ascii: escapes
    path = case.operation.path
    for name, value in variant.path_parameters.items():
        path = path.replace("{" + name + "}", quote(str(value), safe=""))
    return api.request(
        case.method,
        path,
        params=variant.query,
        content=body.encode(),
        headers={"content-type": "application/json", **(headers or {})},
    )


# Routes whose success revokes the token the run logs in with: it logs in again after them.
REVOKING = {"/v0/user/logout", "/v0/user/password", "/v0/user/deactivate"}


def exercise(operation, api, calls: dict[str, int], credentials: Callable[[], dict]) -> None:
    base_url = str(api.base_url).rstrip("/")
    credential = credentials()

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case):
        nonlocal credential
        cases = calls.get(operation.label, 0) // 2
        # Every other case logs in (the route's real work); the rest send what was generated.
        headers = credential if cases % 2 == 0 else None
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS)
        poison = POISONS[cases % len(POISONS)]
        again = send_poisoned(api, case, poison, headers)
        assert again.status_code < 500, (poison, case.method, case.path, again.text[:300])
        calls[operation.label] = 2 * (cases + 1)
        if operation.path in REVOKING:
            credential = credentials()

    check()


def run_every_route(
    api, schema_path: str = "/v0/openapi.json", credentials=None, operations_at_least: int = 8
) -> int:
    """Every operation of the document at `schema_path` on `api`, half of the cases with
    what `credentials()` gives (default: a logged-in user's token)."""
    base_url = str(api.base_url).rstrip("/")
    schema = schemathesis.openapi.from_url(f"{base_url}{schema_path}")
    calls: dict[str, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        exercise(operation, api, calls, credentials or (lambda: {"token": login(api)["token"]}))
    assert set(calls) == {operation.label for operation in operations}
    total = sum(calls.values())
    # Operations without parameters give hypothesis fewer distinct cases to make.
    assert total >= operations_at_least * EXAMPLES_PER_OPERATION * 2, calls
    print(f"schemathesis: {total} requests over {len(calls)} operations")
    return total


@pytest.fixture
def unthrottled(monkeypatch):
    """Thousands of generated wrong passwords would lock the run's own login out (the
    throttle has its own tests): the limits are raised for this run only."""
    monkeypatch.setenv("AUTH_LOGIN_FAILURES_PER_ACCOUNT", "1000000")
    monkeypatch.setenv("AUTH_LOGIN_FAILURES_PER_CLIENT", "1000000")


@pytest.mark.slow
def test_every_route_survives_generated_requests_on_sqlite(unthrottled, aianimals_home):
    with serving_api() as (api, _):
        run_every_route(api)


@pytest.mark.slow
@pytest.mark.integration
def test_every_route_survives_generated_requests_on_postgresql(
    unthrottled, tmp_path_factory, aianimals_generated
):
    home = tmp_path_factory.mktemp("properties") / "mlsys-home"
    with services_deployment(home, aianimals_generated) as api:
        run_every_route(api)


@pytest.mark.slow
def test_every_route_survives_generated_requests_through_the_proxy(unthrottled, aianimals_home):
    """Issue 32: the A/B test proxy in front of the API, as the app reaches it: every API
    route through it, no 5xx and every answer as the API's document declares."""
    import httpx

    from mlsys.ab_test_proxy.proxy import create_app
    from tests.ab_test_proxy.test_proxy import experiment

    with (
        serving_api() as (_, api),
        ApiServer(create_app(experiment("user", upstream=api.url))) as proxy,
        httpx.Client(base_url=proxy.url, timeout=30) as client,
    ):
        run_every_route(client)


@pytest.mark.slow
def test_the_classifier_server_survives_generated_requests(monkeypatch):
    """Issue 32: the classifier's server with a champion loaded, every route, half of the
    cases with its callers' token: no 5xx, every answer as its document declares."""
    import httpx

    from mlsys.violation_detection.serve import champion_classifier, create_app
    from tests.helpers.moderation import register_tiny_classifier

    token = "t" * 48
    monkeypatch.setenv("VIOLATION_DETECTION_TOKEN", token)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the test's own local store
    register_tiny_classifier(0.5)
    champion = champion_classifier()
    champion.refresh()
    with (
        ApiServer(create_app(champion)) as server,
        httpx.Client(base_url=server.url, timeout=30) as client,
    ):
        run_every_route(client, "/openapi.json", lambda: {"Authorization": f"Bearer {token}"},
                        operations_at_least=1)  # fmt: skip
