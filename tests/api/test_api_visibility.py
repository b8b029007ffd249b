"""A deactivated post is its owner's alone: others neither list it nor load its photo
(issue 10, item 3). A photo is served while an active post shows it."""

from sqlalchemy import select, update

from mlsys.aianimals.database import get_engine
from mlsys.aianimals.tables import Animal, User
from tests.helpers.aianimals import PNG, post_animal
from tests.helpers.http import login


def another_user() -> str:
    with get_engine().connect() as connection:
        return connection.scalar(
            select(User.handle_name).where(
                User.handle_name != "dog_leigh", User.deactivated.is_(False)
            )
        )


def test_only_the_owner_lists_and_loads_a_deactivated_post(api):
    owner, other = login(api), login(api, another_user())
    posted = post_animal(api, owner, category=2, subcategory=30)
    assert api.get(posted["photo_url"]).status_code == 200  # active: public, as the app loads it
    with get_engine().begin() as connection:
        connection.execute(update(Animal).where(Animal.id == posted["id"]).values(deactivated=True))

    def deactivated_ids(token):
        response = api.get(
            "/v0/animal", params={"deactivated": "true", "limit": 200}, headers=token
        )
        assert response.status_code == 200
        return {animal["id"] for animal in response.json()}

    assert posted["id"] in deactivated_ids(owner)
    assert posted["id"] not in deactivated_ids(other)
    everyone_deactivated = api.get("/v0/animal", params={"deactivated": "true"}, headers=other)
    assert all(a["user_id"] != posted["user_id"] for a in everyone_deactivated.json())
    assert api.get(posted["photo_url"]).status_code == 404
    assert api.get(posted["photo_url"], headers=other).status_code == 404
    assert api.get(posted["photo_url"], headers=owner).status_code == 200


def test_who_liked_a_deactivated_post_is_its_owners_to_know(api):
    """Issue 32, item 16: `GET /v0/like?animal_id=` listed them to anyone."""
    owner, other = login(api), login(api, another_user())
    posted = post_animal(api, owner, category=2, subcategory=30)
    liked = api.post("/v0/like", json={"animal_id": posted["id"]}, headers=other)
    assert liked.status_code == 201

    def likers(token, **params):
        response = api.get("/v0/like", params=params, headers=token)
        assert response.status_code == 200
        return [like["animal_id"] for like in response.json()]

    assert likers(other, animal_id=posted["id"]) == [posted["id"]]
    with get_engine().begin() as connection:
        connection.execute(update(Animal).where(Animal.id == posted["id"]).values(deactivated=True))
    assert likers(other, animal_id=posted["id"]) == []
    assert posted["id"] not in likers(other, user_id=liked.json()["user_id"])
    assert likers(owner, animal_id=posted["id"]) == [posted["id"]]


def test_a_stored_file_that_no_post_shows_is_not_served(api, aianimals_home):
    stray = aianimals_home / "storage" / "uploads" / "stray.png"
    stray.parent.mkdir(parents=True, exist_ok=True)
    stray.write_bytes(PNG)
    assert api.get("/v0/photos/uploads/stray.png").status_code == 404
