"""What the AIAnimals tests share: a small photo, searching, reading the cache counters, and
the services-profile deployment."""

import io
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

AIANIMALS_POSTS = 600  # the small seeded dataset the session fixtures generate and load

# A real 32x32 white PNG: the smallest photo the API takes (the classifier's least side).
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00 \x00\x00\x00 \x08\x02\x00\x00\x00"
    b"\xfc\x18\xed\xa3\x00\x00\x00)IDATx\x9c\xed\xcd1\x01\x00\x00\x08\xc30\xc0\xbf\xe7a"
    b"\x02\xbeT@\xd3I\xea\xb3y\xbd\x03\x00\x00\x00\x00\x00\x00\x00\x00\x80\xc3\x16\xc7"
    b"\xf1\x03=.\x18\x03c\x00\x00\x00\x00IEND\xaeB`\x82"
)
# A real 1x1 white PNG: an image no model can judge, which the API refuses.
TINY_PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00"
    b"\x00\x90wS\xde\x00\x00\x00\x0cIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\r\xefF\xb8"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


def post_animal(api, token: dict, description: str = "y", *, photo: bytes = PNG,
                name: str = "x", category: int = 1, subcategory: int = 24) -> dict:  # fmt: skip
    """A post made as the app makes it (`POST /v0/animal`, a form and a photo): the post."""
    form = {"name": name, "description": description, "animal_category_id": str(category),
            "animal_subcategory_id": str(subcategory)}  # fmt: skip
    response = api.post("/v0/animal", data=form, files={"photo": ("p.png", photo)}, headers=token)
    assert response.status_code == 201, response.text
    return response.json()


def palette_png_without_its_palette() -> bytes:
    """A palette PNG whose PLTE chunk is gone: Pillow opens it, then fails its own way."""
    from PIL import Image

    image = Image.new("P", (64, 64))
    image.putpalette([0, 0, 0, 255, 255, 255] * 128)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    data, chunks, at = buffer.getvalue(), [], 8
    while at < len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        if data[at + 4 : at + 8] != b"PLTE":
            chunks.append(data[at : at + 12 + length])
        at += 12 + length
    return data[:8] + b"".join(chunks)


def same_pixels(first: bytes, second: bytes) -> bool:
    from PIL import Image

    with Image.open(io.BytesIO(first)) as a, Image.open(io.BytesIO(second)) as b:
        return a.format == b.format and a.size == b.size and a.tobytes() == b.tobytes()


def search(api, token, body, **params):
    response = api.post("/v0/animal/search", json=body, headers=token, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def android_app_sequence(
    api, handle_name: str = "dog_leigh", password: str = "password"
) -> tuple[int, dict, dict]:
    """The Android app's calls: login (as dog_leigh) -> metadata -> search (limit=100) ->
    open a post -> like -> access logs with select, see_long and like, all with the `token`
    header. Returns the user's id, the search's answer and the last access log sent."""
    response = api.post("/v0/user/login", json={"handle_name": handle_name, "password": password})
    assert response.status_code == 200
    user_id, token = response.json()["user_id"], {"token": response.json()["token"]}

    metadata = api.get("/v0/metadata", headers=token).json()
    assert {c["name_en"] for c in metadata["animal_category"]} == {"other", "cat", "dog"}
    assert len(metadata["animal_subcategory"]) == 38 and len(metadata["violation_type"]) == 5

    found = search(api, token, {"phrases": ["ねこ"], "sort_by": "score"}, limit=100)
    assert 0 < len(found["results"]) <= 100 and found["hits"] >= len(found["results"])
    first = found["results"][0]
    assert first["animal_category_name_en"] == "cat"

    opened = api.get("/v0/animal", params={"id": first["id"]}, headers=token).json()
    assert [a["id"] for a in opened] == [first["id"]]
    photo = api.get(opened[0]["photo_url"])
    assert photo.status_code == 200 and photo.content.startswith(b"\x89PNG")

    liked = api.post("/v0/like", json={"animal_id": first["id"]}, headers=token)
    assert liked.status_code == 201 and liked.json()["user_id"] == user_id

    for position, action in enumerate(["select", "see_long", "like"]):
        log = {
            "search_id": found["search_id"],
            "animal_id": first["id"],
            "action": action,
            "position": 0,
            "phrases": ["ねこ"],
            "sort_by": "score",
        }
        response = api.post("/v0/access_log", json=log, headers=token)
        assert response.status_code == 201, (position, response.text)
    return user_id, found, log


def cache_count(api, result: str) -> float:
    return metric(api, f'search_cache_requests_total{{result="{result}"}}')


def metric(api, series: str) -> float:
    """The value of one series (name and labels as exposed) on the API's /metrics, 0 when
    it is absent."""
    for line in api.get("/metrics").text.splitlines():
        if line.startswith(f"{series} "):
            return float(line.split()[-1])
    return 0.0


@contextmanager
def services_deployment(home: Path, generated: Path) -> Iterator:
    """The AIAnimals services profile as deployed, on this machine's PostgreSQL, Redis and
    RabbitMQ (search on the local engine: no Elasticsearch server runs here): a fresh
    database, vhost and key prefix; each component as its own PostgreSQL role with only
    its privileges (the owner migrates, the batch jobs load and deliver, the API serves);
    the seeded data loaded and indexed. Yields an HTTP client of the API; the environment
    stays set meanwhile (commands run as the batch role). Everything is removed after."""
    import pytest
    import redis

    from tests.helpers.cli import run_cli
    from tests.helpers.http import serving_api
    from tests.helpers.services import (
        PG,
        create_database,
        create_roles,
        drop_database,
        port_open,
        rabbitmqctl,
        require,
    )

    require(port_open("127.0.0.1", 6379), "Redis on localhost:6379")
    require(port_open("127.0.0.1", 5672), "RabbitMQ on localhost:5672")
    database = create_database("mlsys_api")
    vhost, prefix = f"mlsys-test-{uuid.uuid4().hex[:10]}", f"mlsys-test:{uuid.uuid4().hex[:10]}:"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    environment = {
        "MLSYS_PROFILE": "services",
        "MLSYS_HOME": str(home),
        "POSTGRES_HOST": PG["host"],
        "POSTGRES_DB": database,
        "REDIS_KEY_PREFIX": prefix,
        "RABBITMQ_VHOST": vhost,
        "SEARCH_ENGINE": "local",
    }
    roles = create_roles(database, ["api", "batch", "search", "violation_detection"])
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in environment.items():
                patch.setenv(name, value)
            patch.setenv("POSTGRES_USER", roles["owner"])
            run_cli("mlsys.batch", "migrate")
            patch.setenv("POSTGRES_USER", roles["batch"])
            run_cli("mlsys.batch", "initial-load", "--generated", str(generated))
            published = run_cli("mlsys.batch", "relay").stdout
            assert f"published: {AIANIMALS_POSTS}" in published, published
            indexed = run_cli("mlsys.batch", "search-index", "--idle-seconds", "1").stdout
            assert f"handled: {AIANIMALS_POSTS}" in indexed, indexed
            patch.setenv("POSTGRES_USER", roles["api"])
            with serving_api() as (client, _):
                patch.setenv("POSTGRES_USER", roles["batch"])  # the commands tests run
                yield client
    finally:
        rabbitmqctl("delete_vhost", vhost)
        keys = list(redis.Redis().scan_iter(f"{prefix}*"))
        if keys:
            redis.Redis().delete(*keys)
        drop_database(database)


def spawn(env: dict, *args: str, log) -> subprocess.Popen:
    """`python -m ARGS` as its own process, as deployed, its output into `log`."""
    from tests.helpers.paths import ROOT

    return subprocess.Popen(
        [sys.executable, "-m", *args], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
    )


def wait_until(condition, timeout: float = 20) -> float:
    """Seconds until `condition()` held; fails at the timeout."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.05)
    return time.monotonic() - start


def dead_letters(queue) -> int:
    """Messages in RabbitMQ's dead-letter queue of a consumer's queue."""
    from mlsys.aianimals.messages import rabbitmq_connection

    connection = rabbitmq_connection()
    try:
        return (
            connection.channel().queue_declare(f"{queue}.dead", passive=True).method.message_count
        )
    finally:
        connection.close()


def publish(payload: dict, times: int = 1) -> None:
    """An `animal.created` message straight to RabbitMQ (as a broken producer would)."""
    import json

    import pika

    from mlsys.aianimals.messages import EXCHANGE, Topic, confirmed_channel

    with confirmed_channel() as channel:
        for _ in range(times):
            channel.basic_publish(
                EXCHANGE, Topic.animal_created, json.dumps(payload).encode(),
                pika.BasicProperties(type=Topic.animal_created, message_id="test"),
            )  # fmt: skip


def give_a_post_an_untokenizable_description() -> str:
    """What the API took before its limits held after normalisation (issue 32, item 4):
    2,000 x U+FDFA, 66,000 bytes once NFKC-normalised, over the tokenizer's input limit.
    Written to the database of the current environment; returns the post's id."""
    from sqlalchemy import select, update

    from mlsys.aianimals.database import get_engine
    from mlsys.aianimals.tables import Animal

    with get_engine().begin() as connection:
        animal_id = connection.scalar(select(Animal.id).order_by(Animal.id).limit(1))
        connection.execute(
            update(Animal).where(Animal.id == animal_id).values(description="\ufdfa" * 2000)
        )
    return animal_id
