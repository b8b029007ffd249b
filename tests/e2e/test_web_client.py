"""The web client at /app in headless Chromium, against the API of a loaded home (local
profile): log in as dog_leigh, search ねこ, open a post, like it, post a photo. It speaks
only the public /v0 API with the `token` header, as the Android app does."""

import time

import pytest

from tests.helpers.http import link_token, login, mailed, serving_api
from tests.helpers.moderation import IMAGES
from tests.helpers.paths import SCREENSHOTS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def server(aianimals_home):
    with serving_api() as (client, server):
        yield client, server.url


def holds(page, expression: str, timeout: float = 30) -> None:
    """Wait until `expression` is true in the page. Not wait_for_function: it evaluates
    its predicate with eval inside the page, which the client's CSP refuses (as it should);
    page.evaluate goes through the DevTools protocol."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        assert time.monotonic() < deadline, f"not within {timeout} s: {expression}"
        time.sleep(0.1)


def test_login_search_open_like_and_post_in_the_browser(server, browser, tmp_path):
    client, url = server
    page = browser.new_page(viewport={"width": 1300, "height": 950}, locale="ja-JP")
    sent = []  # every API request carries the token header once logged in
    page.on("request", lambda r: sent.append((r.url, r.headers.get("token"))))
    page.goto(f"{url}/app/")

    page.locator("#login-form").get_by_label("Handle name").fill("dog_leigh")
    page.locator("#login-form").get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Log in").click()
    holds(page, "document.querySelector('#login-error').textContent.length > 0")
    assert page.get_by_text("@dog_leigh").count() == 0
    page.locator("#login-form").get_by_label("Password").fill("password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("@dog_leigh").wait_for(timeout=30_000)

    page.get_by_label("Search").fill("ねこ")
    page.get_by_label("Sort").select_option("like")
    page.get_by_role("button", name="Search", exact=True).click()
    results = page.locator("#results li")
    holds(page, "document.querySelector('#search-summary').textContent.endsWith('posts')")
    assert results.count() > 0
    token = {"token": login(client)["token"]}
    hits = int(page.locator("#search-summary").inner_text().split()[0])
    body = {"phrases": ["ねこ"], "sort_by": "like"}
    assert hits == client.post("/v0/animal/search", json=body, headers=token).json()["hits"]
    holds(
        page,
        "[...document.querySelectorAll('#results img')].every(i => i.complete && i.naturalWidth)",
    )
    # every photo shown: served by the API to the logged-in user
    page.screenshot(path=SCREENSHOTS / "web_client_search.png", full_page=True)

    first = results.first
    animal_id = first.get_attribute("data-id")
    first.click()
    page.locator("#post-view").wait_for(state="visible", timeout=10_000)
    likes_before = int(page.locator("#post-likes").inner_text())
    page.get_by_role("button", name="Like").click()
    page.get_by_role("button", name="Liked").wait_for(timeout=10_000)
    assert int(page.locator("#post-likes").inner_text()) in (likes_before, likes_before + 1)
    page.screenshot(path=SCREENSHOTS / "web_client_post_liked.png", full_page=True)
    liked = client.get("/v0/animal/liked_by", headers=token).json()
    assert animal_id in [post["id"] for post in liked]

    page.get_by_role("button", name="← Back to the results").click()
    page.get_by_role("button", name="Post a photo").click()
    page.get_by_label("Name", exact=True).fill("ブラウザから")
    page.get_by_label("Description").fill("ウェブから投稿したネコ")
    page.get_by_label("Category").last.select_option(index=0)
    page.get_by_label("Breed").last.select_option(index=0)
    photo = next((IMAGES / "animal").glob("*.png"))
    page.get_by_label("Photo (PNG or JPEG, at most 5 MiB)").set_input_files(str(photo))
    page.get_by_role("button", name="Post", exact=True).click()
    page.get_by_role("status").filter(has_text="Posted “ブラウザから”").wait_for(timeout=30_000)
    page.screenshot(path=SCREENSHOTS / "web_client_posted.png", full_page=True)
    page.close()

    acting = [(u, t) for u, t in sent if any(p in u for p in ("/search", "/v0/like", "/v0/animal"))]
    assert acting and all(t for _, t in acting)  # the token header, as the app sends it


def test_sign_up_confirm_the_mailed_link_and_log_in_in_the_browser(server, browser):
    """Item 13 of issue 32: signing up mails a link; the account exists once it is opened
    and confirmed (a click: opening the page alone, as mail scanners do, confirms nothing)."""
    client, url = server
    page = browser.new_page(viewport={"width": 1300, "height": 950})
    page.goto(f"{url}/app/")
    signup = page.locator("#signup-form")
    signup.get_by_label("Handle name").fill("browser_cat")
    signup.get_by_label("Email address").fill("browser_cat@example.com")
    signup.get_by_label("Password").fill("a long password")
    signup.get_by_label("Age").fill("30")
    signup.get_by_role("button", name="Sign up").click()
    page.get_by_text("Check your mail").wait_for(timeout=10_000)
    mail = mailed("browser_cat@example.com")
    link = next(line for line in mail.get_content().split() if "#verify=" in line)
    token = link_token(mail)
    page.close()
    page = browser.new_page(viewport={"width": 1300, "height": 950})  # the mail's link
    page.goto(link.replace("http://127.0.0.1:8000", url))
    page.get_by_role("button", name="Confirm my address").wait_for(timeout=10_000)
    credentials = {"handle_name": "browser_cat", "password": "a long password"}
    refused = client.post("/v0/user/login", json=credentials)
    assert refused.status_code == 401  # opened, not yet confirmed
    page.get_by_role("button", name="Confirm my address").click()
    page.get_by_text("Your address is confirmed").wait_for(timeout=10_000)
    assert "verify" not in page.url  # the used token is off the address bar
    page.locator("#login-form").get_by_label("Password").fill("a long password")
    page.locator("#login-form").get_by_role("button", name="Log in").click()
    page.get_by_text("@browser_cat", exact=True).wait_for(timeout=30_000)
    page.screenshot(path=SCREENSHOTS / "web_client_signed_up.png", full_page=True)
    page.close()
    assert client.post("/v0/user/verify", json={"token": token}).status_code == 404  # used
