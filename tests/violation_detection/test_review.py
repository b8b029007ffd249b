"""The review portal's queries on a loaded local home (SQLite, as `make demo` runs them):
the queue holds the deactivated posts nobody decided on, oldest first, searched by post
id or by a part of its name (taken literally), and a decision takes a post out of it."""

import time

from sqlalchemy import select, update

from mlsys.aianimals.database import get_engine
from mlsys.aianimals.tables import Animal, User
from mlsys.violation_detection.detect import Judgement, Judgements, record
from mlsys.violation_detection.review import Decision, Reviewer, decide, review_queue, violations


def test_the_queue_is_the_undecided_violations_oldest_first_and_searchable(aianimals_home):
    engine = get_engine()
    with engine.begin() as db:
        posts = db.scalars(
            select(Animal.id).where(Animal.deactivated.is_(False)).order_by(Animal.id).limit(3)
        ).all()
        db.execute(update(Animal).where(Animal.id == posts[1]).values(name="50%オフの看板"))
        moderator = db.execute(select(User.id, User.handle_name).limit(1)).one()
    first, second, below = posts
    for animal_id, probability in ((first, 0.9), (second, 0.8), (below, 0.1)):
        with engine.begin() as db:
            record(db, Judgements("no_animal/1", 0.5, [Judgement(animal_id, probability,
                                                                 probability > 0.5)]))  # fmt: skip
        time.sleep(0.01)  # distinct found-at times: the order is the order they were found

    queue = review_queue(engine)
    assert queue["animal_id"].tolist() == [first, second]  # the one below the threshold waits not
    assert review_queue(engine, post=second)["animal_id"].tolist() == [second]
    assert review_queue(engine, post="50%")["animal_id"].tolist() == [second]
    assert review_queue(engine, post="0%オ")["animal_id"].tolist() == [second]
    assert review_queue(engine, post="5_%").empty  # literal: "_" and "%" are not patterns
    assert review_queue(engine, limit=1)["animal_id"].tolist() == [first]

    reviewer = Reviewer(id=moderator.id, handle_name=moderator.handle_name, token_version=0)
    decide(engine, int(queue["id"][0]), reviewer, Decision.approved)
    assert review_queue(engine)["animal_id"].tolist() == [second]
    decided = violations(engine, decided=True)
    assert decided["animal_id"].tolist() == [first]
    assert decided["reviewer"].tolist() == [moderator.handle_name]
    assert len(violations(engine, decided=False)) == 2
