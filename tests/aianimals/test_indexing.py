"""The search-index consumer: an index write that succeeded is not failed (and retried, and
dead-lettered) because the cache could not be invalidated (issue 10, item 5)."""

from sqlalchemy import create_engine, select

from mlsys.aianimals.indexing import index_posts
from mlsys.aianimals.local_search import LocalSearchIndex
from mlsys.aianimals.messages import Message, Topic
from mlsys.aianimals.tables import Animal
from tests.helpers.services import free_port


def test_an_unreachable_cache_does_not_fail_a_done_index_write(aianimals_home, monkeypatch, caplog):
    engine = create_engine(f"sqlite:///{aianimals_home / 'aianimals.db'}")
    index = LocalSearchIndex(aianimals_home / "search.sqlite")
    with engine.connect() as connection:
        post = connection.scalar(select(Animal.id).limit(1))
    before = index.count()
    index.delete([post])
    assert index.count() == before - 1
    # The cache of the services profile, on a port where nothing listens.
    monkeypatch.setenv("MLSYS_PROFILE", "services")
    monkeypatch.setenv("REDIS_PORT", str(free_port()))
    index_posts(engine, index, [Message("1", Topic.animal_updated, {"animal_id": post})])
    assert index.count() == before  # the post is indexed again, and no error was raised
    assert "cache not invalidated after indexing" in caplog.text
    engine.dispose()
