"""The photo stores (issue 11, item 4): the directory of the local profile, and the
database table of the services profile, which needs no volume shared between nodes."""

import pytest
from sqlalchemy import create_engine

from mlsys.aianimals.database import SCHEMA
from mlsys.aianimals.storage import DatabaseStore, DirectoryStore, InvalidKey
from mlsys.common import migrate
from tests.helpers.aianimals import PNG
from tests.helpers.services import PG


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database_store(request, tmp_path):
    if request.param == "sqlite":
        engine = create_engine(f"sqlite:///{tmp_path / 'aianimals.db'}")
    else:
        database = request.getfixturevalue("postgres_db")
        engine = create_engine(f"postgresql+psycopg://{PG['user']}@{PG['host']}/{database}")
    migrate.upgrade(SCHEMA, engine)
    yield DatabaseStore(engine)
    engine.dispose()


def test_the_database_store_keeps_photos_and_their_type(database_store, tmp_path):
    database_store.put("uploads/ab/one.png", PNG)
    assert database_store.get("uploads/ab/one.png") == PNG
    assert database_store.get("uploads/ab/missing.png") is None
    source = tmp_path / "seed.png"
    source.write_bytes(PNG)
    assert database_store.put_file("dataset/seed.png", source) is True
    assert database_store.put_file("dataset/seed.png", source) is False  # a re-load
    assert database_store.get("dataset/seed.png") == PNG


def test_a_photo_put_in_a_failed_transaction_is_not_kept(database_store):
    """The API writes the photo with its post: a failed post leaves no photo."""
    with pytest.raises(RuntimeError), database_store.engine.begin() as connection:
        database_store.put("uploads/ab/orphan.png", PNG, connection)
        raise RuntimeError("the post's insert failed")
    assert database_store.get("uploads/ab/orphan.png") is None


def test_the_directory_store_refuses_keys_outside_it(tmp_path):
    store = DirectoryStore(tmp_path / "storage")
    store.put("uploads/ab/one.png", PNG)
    assert store.get("uploads/ab/one.png") == PNG
    assert store.get("../outside.png") is None
    with pytest.raises(InvalidKey):
        store.put("../../etc/passwd", b"x")
    store.discard("uploads/ab/one.png")
    assert store.get("uploads/ab/one.png") is None
