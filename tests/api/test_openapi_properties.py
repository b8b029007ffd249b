"""Property-based run of the OpenAPI schema with schemathesis: every route, generated
requests (valid and invalid), no 5xx and no response that breaks the schema."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from tests.helpers.http import login

EXAMPLES_PER_OPERATION = 60
MINIMUM_REQUESTS = 500
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]


def exercise(operation, base_url: str, token: str, calls: dict[str, int]) -> None:
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case):
        count = calls.get(operation.label, 0)
        # Every other case logs in (the route's real work); the rest send what was generated.
        headers = {"token": token} if count % 2 == 0 else None
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        calls[operation.label] = count + 1
        case.validate_response(response, checks=CHECKS)

    check()


@pytest.mark.slow
def test_every_route_survives_generated_requests(api):
    base_url = str(api.base_url).rstrip("/")
    schema = schemathesis.openapi.from_url(f"{base_url}/v0/openapi.json")
    token = login(api)["token"]
    calls: dict[str, int] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        exercise(operation, base_url, token, calls)
    assert set(calls) == {operation.label for operation in operations}
    assert sum(calls.values()) >= MINIMUM_REQUESTS, calls
    print(f"schemathesis: {sum(calls.values())} requests over {len(calls)} operations")
