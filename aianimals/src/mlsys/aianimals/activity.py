"""Keeping the posts' online ranking features (post_activity) current between runs of
`python -m mlsys.search features`: the ranking-features consumer gives a new post its row
and refreshes its owner's post count. The access-log counts are the features job's: a
row's are kept as they are. (A post's like count is not here: the API takes the search
engine's, which the indexer keeps current.)"""

from datetime import UTC, datetime

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects import postgresql, sqlite

from mlsys.aianimals.indexing import post_ids
from mlsys.aianimals.messages import Message
from mlsys.aianimals.ranking import FEATURE_SET_VERSION, LOGGED_ACTIVITY
from mlsys.aianimals.tables import Animal, PostActivity


def refresh_activity(engine: Engine, messages: list[Message]) -> None:
    """Upsert the rows of the posts the messages name (idempotent: the counts are read
    from the tables, never incremented, so a redelivered message changes nothing)."""
    ids = post_ids(messages)
    with engine.begin() as connection:
        posts = connection.execute(
            select(Animal.id, Animal.user_id).where(Animal.id.in_(ids))
        ).all()
        if not posts:
            return
        owners = {owner for _, owner in posts}
        owned = dict(
            connection.execute(
                select(Animal.user_id, func.count())
                .where(Animal.user_id.in_(owners))
                .group_by(Animal.user_id)
            ).all()
        )
        now = datetime.now(UTC)
        rows = [
            {
                "animal_id": animal_id,
                "feature_set_version": FEATURE_SET_VERSION,
                "owner_posts": float(owned.get(owner, 0)),
                **dict.fromkeys(LOGGED_ACTIVITY, 0.0),
                "updated_at": now,
            }
            for animal_id, owner in posts
        ]
        dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(PostActivity).values(rows)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[PostActivity.animal_id],
                set_={
                    "owner_posts": statement.excluded.owner_posts,
                    "updated_at": statement.excluded.updated_at,
                },
            )
        )
