"""POST /v0/animal/search/similar: the champion image embedding's index of the posts'
photos, built by the real job (a tiny model on a sample of the shipped photos), in the
API's memory: most similar first, never the post itself nor a deactivated post, new
posts added by the image-index consumer, a new champion served without a restart."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import update

from mlsys.aianimals.image_index import IMAGE_EMBEDDING_MODEL_NAME, model_version_name
from tests.helpers.aianimals import PNG, TINY_PNG, wait_until
from tests.helpers.cli import local_env, run_cli
from tests.helpers.http import login, serving_api
from tests.helpers.paths import ROOT

pytestmark = pytest.mark.slow
TINY = ("--limit", "200", "--epochs", "2", "--resolution", "24", "--width", "4")
A_PHOTO = ROOT / "dataset/images/animal/animals__amphibian__2_dead_frogs_lumen_desig_01.png"


@pytest.fixture(scope="module")
def similar_home(aianimals_loaded, tmp_path_factory) -> Path:
    """The loaded home with a champion image embedding and every post embedded by it."""
    home = tmp_path_factory.mktemp("similar") / "mlsys-home"
    shutil.copytree(aianimals_loaded, home)
    run_cli("mlsys.search", "build-image-index", *TINY, env=local_env(home))
    return home


@pytest.fixture
def similar_api(similar_home, local_home):
    shutil.copytree(similar_home, local_home)
    with serving_api() as (client, _):
        yield client


def similar(api, token, animal_id: str, limit: int = 10):
    return api.post(
        "/v0/animal/search/similar", json={"animal_id": animal_id, "limit": limit}, headers=token
    )


def served_vectors(version: int) -> dict[str, np.ndarray]:
    from mlsys.aianimals.database import get_engine
    from mlsys.aianimals.image_index import read_embeddings

    with get_engine().connect() as db:
        ids, vectors, _ = read_embeddings(db, model_version_name(version))
    return dict(zip(ids, vectors, strict=True))


def deactivate(animal_id: str) -> None:
    from mlsys.aianimals.database import get_engine
    from mlsys.aianimals.tables import Animal

    with get_engine().begin() as db:
        db.execute(update(Animal).where(Animal.id == animal_id).values(deactivated=True))


def test_similar_posts_come_most_similar_first_never_the_post_nor_a_deactivated_one(
    similar_api,
):
    api, token = similar_api, login(similar_api)
    vectors = served_vectors(1)
    query = sorted(vectors)[0]
    wait_until(lambda: similar(api, token, query).status_code == 200)
    body = similar(api, token, query).json()
    assert body["model"] == f"{IMAGE_EMBEDDING_MODEL_NAME}/1"
    found = [(hit["id"], hit["similarity"]) for hit in body["results"]]
    assert len(found) == 10 and query not in dict(found)
    # Exact cosine similarities over every other post: the index's order is theirs.
    exact = {i: float(v @ vectors[query]) for i, v in vectors.items() if i != query}
    best = sorted(exact.values(), reverse=True)[:10]
    np.testing.assert_allclose([s for _, s in found], best, atol=1e-5)
    for animal_id, score in found:
        assert score == pytest.approx(exact[animal_id], abs=1e-5)
    assert body["results"][0]["photo_url"].endswith(".png")

    deactivate(found[0][0])
    again = [hit["id"] for hit in similar(api, token, query).json()["results"]]
    assert found[0][0] not in again and len(again) == 10
    assert again[:9] == [i for i, _ in found[1:]] or set(again[:9]) <= set(exact)
    assert [h["id"] for h in similar(api, token, query, limit=3).json()["results"]] == again[:3]

    assert similar(api, token, "0" * 32).status_code == 404
    assert similar(api, token, query, limit=0).status_code == 422
    assert api.post("/v0/animal/search/similar", json={"animal_id": query}).status_code == 401
    deactivate(query)  # another's deactivated post is no query either
    assert similar(api, token, query).status_code == 404


def test_without_a_champion_embedding_the_endpoint_says_why(api):
    token = login(api)
    some_post = api.get("/v0/animal", headers=token, params={"limit": 1}).json()[0]["id"]
    wait_until(lambda: similar(api, token, some_post).status_code == 503)
    assert "no champion similar-image index" in similar(api, token, some_post).json()["detail"]


def test_a_new_post_joins_the_index_and_a_new_champion_is_served_without_a_restart(
    similar_home, local_home, monkeypatch
):
    from sqlalchemy import select

    import mlflow
    from mlsys.aianimals.database import get_engine
    from mlsys.aianimals.storage import photo_store
    from mlsys.aianimals.tables import Animal
    from mlsys.api import similar as served
    from mlsys.common.tracking import CHAMPION, configure_tracking
    from mlsys.search.post_embeddings import embed_all_posts, load_embedding

    shutil.copytree(similar_home, local_home)
    monkeypatch.setattr(served, "REFRESH_SECONDS", 0.5)  # instead of 30 s
    with serving_api() as (api, _):
        token = login(api)
        form = {"name": "new frog", "description": "a frog", "animal_category_id": "1",
                "animal_subcategory_id": "1"}  # fmt: skip
        posted = []
        for photo in (A_PHOTO.read_bytes(), PNG):
            response = api.post("/v0/animal", headers=token, data=form,
                                files={"photo": ("p.png", photo, "image/png")})  # fmt: skip
            assert response.status_code == 201, response.text
            posted.append(response.json()["id"])
        # A photo stored before uploads were held to the models' rules: too small to embed.
        with get_engine().connect() as connection:
            key = connection.scalar(select(Animal.photo_key).where(Animal.id == posted[1]))
        photo_store().put(key, TINY_PNG)  # the local profile's directory store: replaced
        loaded = sorted(served_vectors(1))[0]
        wait_until(lambda: similar(api, token, loaded).status_code == 200)  # index built
        assert similar(api, token, posted[0]).status_code == 404  # not embedded yet
        consumed = run_cli("mlsys.search", "image-index-consumer", "--idle-seconds", "1",
                           env=local_env(local_home))  # fmt: skip
        assert "dead-lettered: 1" in consumed.stdout  # the 1x1 photo, not the rest
        wait_until(lambda: similar(api, token, posted[0]).status_code == 200, timeout=5)
        assert similar(api, token, posted[1]).status_code == 404

        run_cli("mlsys.search", "build-image-index", *TINY, "--seed", "3", "--no-promote",
                env=local_env(local_home))  # fmt: skip
        assert similar(api, token, posted[0]).json()["model"].endswith("/1")
        # What the job does before it moves the alias: every post embedded by the version.
        embed_all_posts(get_engine(), photo_store(), load_embedding(2))
        configure_tracking()
        mlflow.MlflowClient().set_registered_model_alias(IMAGE_EMBEDDING_MODEL_NAME, CHAMPION, "2")
        wait_until(lambda: similar(api, token, posted[0]).json()["model"].endswith("/2"), 30)


@pytest.mark.e2e
def test_swagger_and_the_web_client_show_similar_posts(similar_api, browser):
    """The demo's promise: in Swagger, the endpoint answers a post's similar posts; a post
    opened in the web client shows them."""
    from tests.helpers.paths import SCREENSHOTS

    api = similar_api
    token = login(api)["token"]
    query = sorted(served_vectors(1))[0]
    wait_until(lambda: similar(api, {"token": token}, query).status_code == 200)
    url = str(api.base_url)
    page = browser.new_page(viewport={"width": 1300, "height": 1400})
    page.goto(f"{url}/v0/docs")
    operation = page.locator("#operations-animal-similar_animals_v0_animal_search_similar_post")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.locator("input[placeholder='token']").fill(token)
    operation.locator("textarea.body-param__text").fill(f'{{"animal_id": "{query}", "limit": 3}}')
    operation.get_by_role("button", name="Execute").click()
    status = operation.locator(".live-responses-table .response .response-col_status").first
    status.wait_for(timeout=20_000)
    assert status.inner_text().strip().startswith("200")
    assert "aianimals_image_embedding/1" in operation.locator(".live-responses-table").inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SCREENSHOTS / "api_swagger_similar.png", full_page=True)

    page.goto(f"{url}/app/")
    page.locator("#login-form").get_by_label("Handle name").fill("dog_leigh")
    page.locator("#login-form").get_by_label("Password").fill("password")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("@dog_leigh").wait_for(timeout=30_000)
    page.get_by_label("Search").fill("ねこ")
    page.get_by_role("button", name="Search", exact=True).click()
    first = page.locator("#results li").first
    first.wait_for(timeout=10_000)
    opened = first.get_attribute("data-id")
    first.click()
    page.locator("#similar-section").wait_for(state="visible", timeout=10_000)
    shown = page.locator("#similar li")
    assert shown.count() == 8
    assert opened not in [shown.nth(i).get_attribute("data-id") for i in range(shown.count())]
    page.screenshot(path=SCREENSHOTS / "web_client_similar.png", full_page=True)
    page.close()
