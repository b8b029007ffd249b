"""Every BI page renders in headless Chromium with its charts and without a Streamlit error."""

import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.helpers.cli import local_env
from tests.helpers.http import wait_for_url
from tests.helpers.monitoring import scrape
from tests.helpers.paths import ROOT, SCREENSHOTS
from tests.helpers.services import free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PAGES = {  # url path: (heading, minimum number of charts)
    "": ("Sales explorer", 2),
    "evaluation": ("Predictions against actuals", 2),
    "models": ("Model history", 1),
    "drift": ("Drift", 2),
}


def serve_bi(env: dict):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlsys.bi", "serve", "--port", str(port)],
        env=env | {"METRICS_PORT": str(metrics_port := free_port())},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for_url(f"{url}/_stcore/health", timeout=60, process=server)
    return Served(url, f"http://127.0.0.1:{metrics_port}/metrics", server)


@dataclass(frozen=True)
class Served:
    url: str
    metrics: str  # its pages' runs (METRICS_PORT)
    server: subprocess.Popen

    def stop(self) -> None:
        self.server.terminate()
        self.server.wait(timeout=30)


@pytest.fixture(scope="module")
def bi(demo_home):
    served = serve_bi(local_env(demo_home))  # development: open, as in `make demo`
    yield served
    served.stop()


@pytest.fixture
def bi_url(bi) -> str:
    return bi.url


@pytest.fixture(scope="module")
def guarded_bi_url(demo_home):
    served = serve_bi(local_env(demo_home) | {"BI_PASSWORD": "a-password-from-the-secret"})
    yield served.url
    served.stop()


@pytest.mark.parametrize("path", PAGES)
def test_page_renders_with_charts(bi_url, browser, path):
    heading, charts = PAGES[path]
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{bi_url}/{path}")
    page.get_by_role("heading", name=heading).wait_for(timeout=60_000)
    chart = page.locator('[data-testid="stVegaLiteChart"]')
    chart.nth(charts - 1).wait_for(timeout=60_000)
    page.wait_for_load_state("networkidle")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / f"bi_{path or 'sales'}.png", full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.locator('[data-testid="stAlert"]').count() == 0  # no "no data yet" notice
    assert chart.count() >= charts
    assert (
        page.locator(
            '[data-testid="stVegaLiteChart"] canvas, [data-testid="stVegaLiteChart"] svg'
        ).count()
        >= charts
    )
    assert not errors
    page.close()


def test_each_page_run_is_counted_and_timed(bi, browser):
    """Issue 35, item 1: the BI serves its pages' runs on METRICS_PORT, under the names the
    dashboards read (compose's test sees it up before any page was opened)."""
    before = scrape(bi.metrics)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    for path, (heading, _) in PAGES.items():
        page.goto(f"{bi.url}/{path}")
        page.get_by_role("heading", name=heading).wait_for(timeout=60_000)
    page.close()
    after = scrape(bi.metrics)
    for name in ("sales", "evaluation", "models", "drift"):  # the functions, less _page
        runs = ("streamlit_page_runs_total", frozenset({("page", name), ("outcome", "ok")}))
        timed = ("streamlit_page_run_duration_seconds_count", frozenset({("page", name)}))
        assert after[runs] - before.get(runs, 0) >= 1, name
        assert after[timed] >= after[runs], name
        errors = ("streamlit_page_runs_total", frozenset({("page", name), ("outcome", "error")}))
        assert after.get(errors, 0) == 0, name


def test_model_history_names_the_champion(bi_url, browser):
    page = browser.new_page()
    page.goto(f"{bi_url}/models")
    page.get_by_text("Champion", exact=True).wait_for(timeout=60_000)
    assert page.locator('[data-testid="stMetricValue"]').first.inner_text() == "version 1"
    page.close()


def test_filters_change_the_sales_chart(bi_url, browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(bi_url)
    page.get_by_role("heading", name="Sales explorer").wait_for(timeout=60_000)
    total = page.locator('[data-testid="stMetricValue"]').first
    total.wait_for()
    everything = total.inner_text()
    page.get_by_text("monthly").click()
    page.locator('[data-testid="stMultiSelect"]').nth(2).click()
    page.get_by_role("option", name="coffee").click()
    page.keyboard.press("Escape")
    page.wait_for_function(
        "before => document.querySelector('[data-testid=stMetricValue]').innerText !== before",
        arg=everything,
        timeout=30_000,
    )
    assert int(total.inner_text().replace(",", "")) < int(everything.replace(",", ""))
    assert page.locator('[data-testid="stException"]').count() == 0
    page.screenshot(path=SCREENSHOTS / "bi_sales_coffee_monthly.png", full_page=True)
    page.close()


def test_with_a_password_nothing_shows_before_the_login(guarded_bi_url, browser):
    """Issue 10, item 14: the BI had no authentication."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    for path in PAGES:
        page.goto(f"{guarded_bi_url}/{path}")
        page.get_by_role("button", name="Log in").wait_for(timeout=60_000)
        assert page.get_by_role("heading", name=PAGES[path][0]).count() == 0
        assert page.locator('[data-testid="stVegaLiteChart"]').count() == 0
    page.get_by_label("User name").fill("admin")
    page.get_by_role("textbox", name="Password").fill("a guess")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Wrong user name or password.").wait_for(timeout=30_000)
    assert page.get_by_role("heading", name="Sales explorer").count() == 0
    page.get_by_role("textbox", name="Password").fill("a-password-from-the-secret")
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Sales explorer").wait_for(timeout=60_000)
    page.locator('[data-testid="stVegaLiteChart"]').first.wait_for(timeout=60_000)
    page.screenshot(path=SCREENSHOTS / "bi_after_login.png", full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0
    page.close()


def test_outside_development_the_bi_refuses_an_empty_password(demo_home):
    from mlsys.bi.access import bi_settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLSYS_ENVIRONMENT", "production")
        patch.delenv("BI_PASSWORD", raising=False)
        with pytest.raises(RuntimeError, match="BI_PASSWORD is empty"):
            bi_settings()
