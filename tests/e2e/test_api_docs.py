"""The API's Swagger UI and ReDoc render their operations in headless Chromium with no
network: every script and stylesheet comes from the API itself, no request leaves
localhost (a machine or cluster without internet access still has its docs)."""

from urllib.parse import urlsplit

import pytest

from tests.helpers.http import serving_api
from tests.helpers.paths import SCREENSHOTS

pytestmark = pytest.mark.e2e
REDOC_ATTRIBUTION_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.fixture(scope="module")
def docs_api(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLSYS_PROFILE", "local")
        patch.setenv("MLSYS_HOME", str(tmp_path_factory.mktemp("docs") / "mlsys-home"))
        with serving_api() as (client, server):
            yield client, server.url


@pytest.fixture
def offline_page(browser):
    """A page whose requests are all recorded; any that would leave localhost is refused."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    requests, refused = [], []

    def route(route):
        url = route.request.url
        requests.append(url)
        if urlsplit(url).hostname in {"127.0.0.1", "localhost"}:
            route.continue_()
        else:
            refused.append(url)
            route.abort()

    context.route("**/*", route)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page, requests, refused, errors
    context.close()


def operations(client) -> int:
    paths = client.get("/v0/openapi.json").json()["paths"]
    return sum(len(methods) for methods in paths.values())


def test_swagger_ui_renders_every_operation_offline(docs_api, offline_page):
    client, url = docs_api
    page, requests, refused, errors = offline_page
    page.goto(f"{url}/v0/docs")
    blocks = page.locator(".opblock")
    blocks.first.wait_for(timeout=30_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "api_swagger_ui.png", full_page=True)
    assert blocks.count() == operations(client)
    assert page.get_by_text("/v0/animal/search", exact=True).count() >= 1
    assert any(request.endswith("/v0/docs-assets/swagger-ui-bundle.js") for request in requests)
    assert refused == [] and errors == []


def test_redoc_renders_the_operations_offline(docs_api, offline_page):
    _, url = docs_api
    page, requests, refused, errors = offline_page
    page.goto(f"{url}/v0/redoc")
    page.get_by_text("AIAnimals API", exact=False).first.wait_for(timeout=30_000)
    login = page.locator("[data-section-id$='user/login']")
    if login.count() == 0:
        login = page.get_by_text("Log in", exact=False)
    login.first.wait_for(timeout=30_000)
    page.screenshot(path=SCREENSHOTS / "api_redoc.png", full_page=False)
    assert any(request.endswith("/v0/docs-assets/redoc.standalone.js") for request in requests)
    # ReDoc's bundle hard-codes the image of its "API docs by Redocly" link; refused (as
    # offline), the image hides itself and the page renders all the same.
    assert set(refused) <= {REDOC_ATTRIBUTION_LOGO} and errors == []
