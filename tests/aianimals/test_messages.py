"""The outbox, its relay to RabbitMQ and the consumers: at-least-once delivery, retries,
dead letters, and nothing lost while the broker is unreachable."""

import json
import os
import signal
import subprocess
import sys

import pika
import pytest
from sqlalchemy import func, insert, select

from mlsys.aianimals import messages
from mlsys.aianimals.database import get_engine, upgrade
from mlsys.aianimals.messages import (
    QUEUES,
    Message,
    Queue,
    Topic,
    add_to_outbox,
    consume,
    declare_topology,
    outbox_lag,
    rabbitmq_connection,
    relay_outbox,
    replay_dead_letters,
)
from mlsys.aianimals.tables import DeadLetter, OutboxMessage
from tests.helpers.aianimals import wait_until
from tests.helpers.cli import ROOT
from tests.helpers.monitoring import scrape
from tests.helpers.services import free_port


class Recorder:
    """A handler that fails on messages it is told to (a poison message)."""

    def __init__(self, poison: set[str] = frozenset()):
        self.handled: list[str] = []
        self.calls = 0
        self.poison = poison

    def __call__(self, messages: list[Message]) -> None:
        self.calls += 1
        if any(m.payload.get("animal_id") in self.poison for m in messages):
            raise ValueError("poison")
        self.handled += [m.payload["animal_id"] for m in messages]


def queue_posts(engine, ids, topic=Topic.animal_created):
    with engine.begin() as connection:
        add_to_outbox(connection, topic, [{"animal_id": i} for i in ids])


@pytest.fixture
def engine():
    engine = get_engine()
    upgrade(engine)
    return engine


COUNTERS = {
    "handled": messages.HANDLED,
    "failed": messages.FAILED,
    "retried": messages.RETRIED,
    "dead_lettered": messages.DEAD_LETTERED,
}


def sample(metric, **labels: str) -> float:
    """A counter's or gauge's value for `labels` (read from the metric itself: the default
    registry may hold collectors that query a database)."""
    for family in metric.collect():
        for s in family.samples:
            if s.labels == labels and not s.name.endswith("_created"):
                return s.value
    return 0.0


def counted(queue: str) -> dict[str, float]:
    return {name: sample(counter, queue=queue) for name, counter in COUNTERS.items()}


@pytest.fixture
def measured_each_turn(monkeypatch):
    """The queue's gauges measured on every turn of the loop, not every few seconds."""
    monkeypatch.setattr(messages, "MEASURE_EVERY_SECONDS", 0.0)


def test_local_consumer_reads_the_outbox_and_dead_letters_poison(engine, measured_each_turn):
    queue_posts(engine, ["a", "b", "c"])
    queue_posts(engine, ["d"], topic=Topic.animal_updated)
    recorder = Recorder(poison={"b"})
    before = counted(Queue.search_index)
    stats = consume(Queue.search_index, recorder, engine, idle_seconds=0.2)
    assert recorder.handled == ["a", "c", "d"]
    assert (stats.handled, stats.dead_lettered) == (3, 1)
    after = counted(Queue.search_index)
    assert {name: after[name] - before[name] for name in COUNTERS} == {
        "handled": 3,
        "failed": len(stats.errors),
        "retried": stats.retried,
        "dead_lettered": 1,
    }
    assert sample(messages.DEAD_LETTERS, queue=Queue.search_index) == 1
    assert sample(messages.WAITING, queue=Queue.search_index) == 0
    with engine.connect() as connection:
        dead = connection.execute(select(DeadLetter.consumer, DeadLetter.payload)).all()
        assert dead == [("search-index", {"animal_id": "b"})]
        assert outbox_lag(connection)[0] == 0
    # The offset was kept: nothing is handled twice on the next run.
    again = Recorder()
    consume(Queue.search_index, again, engine, idle_seconds=0.2)
    assert again.handled == []


@pytest.fixture
def created_posts_queue(monkeypatch) -> str:
    """A second consumer's queue that receives created posts only."""
    queue = "created-posts-test"
    monkeypatch.setitem(messages.QUEUES, queue, [Topic.animal_created])
    return queue


def test_local_consumers_have_their_own_offsets(engine, created_posts_queue):
    queue_posts(engine, ["a"], topic=Topic.animal_updated)
    queue_posts(engine, ["b"])
    created = Recorder()
    consume(created_posts_queue, created, engine, idle_seconds=0.2)
    assert created.handled == ["b"]  # its topics only
    index = Recorder()
    consume(Queue.search_index, index, engine, idle_seconds=0.2)
    assert index.handled == ["a", "b"]


# --- RabbitMQ -------------------------------------------------------------------------------


@pytest.fixture
def rabbitmq(services_profile, rabbitmq_vhost, engine):
    return engine


def queue_depth(queue: str) -> int:
    connection = rabbitmq_connection()
    try:
        return connection.channel().queue_declare(queue, passive=True).method.message_count
    finally:
        connection.close()


@pytest.mark.integration
def test_relay_publishes_each_message_once_with_confirms(rabbitmq, created_posts_queue):
    queue_posts(rabbitmq, ["a", "b"])
    queue_posts(rabbitmq, ["c"], topic=Topic.animal_updated)
    assert relay_outbox(rabbitmq) == 3
    assert relay_outbox(rabbitmq) == 0  # stamped published: never twice
    assert queue_depth(Queue.search_index) == 3
    assert queue_depth(created_posts_queue) == 2  # created posts only
    with rabbitmq.connect() as connection:
        assert outbox_lag(connection) == (0, 0.0)
        unpublished = select(func.count()).where(OutboxMessage.published_at.is_(None))
        assert connection.scalar(unpublished) == 0


@pytest.mark.integration
def test_consumer_acks_after_handling_and_dead_letters_poison(
    rabbitmq, monkeypatch, measured_each_turn
):
    monkeypatch.setenv("RABBITMQ_MAX_ATTEMPTS", "3")
    queue_posts(rabbitmq, ["a", "poison", "b"])
    relay_outbox(rabbitmq)
    # A message that is not even JSON, published by somebody else.
    connection = rabbitmq_connection()
    connection.channel().basic_publish(
        messages.EXCHANGE,
        Topic.animal_created,
        b"{not json",
        pika.BasicProperties(type=Topic.animal_created),
    )
    connection.close()
    recorder = Recorder(poison={"poison"})
    before = counted(Queue.search_index)
    stats = consume(Queue.search_index, recorder, rabbitmq, idle_seconds=1)
    assert sorted(recorder.handled) == ["a", "b"]
    # The poison post after 3 deliveries (2 backed-off retries); the broken body at once:
    # no retry can make it JSON.
    assert stats.dead_lettered == 2
    assert stats.retried == 2
    after = counted(Queue.search_index)
    assert {name: after[name] - before[name] for name in COUNTERS} == {
        "handled": 2,
        "failed": 4,  # the poison post's three deliveries and the broken body
        "retried": 2,
        "dead_lettered": 2,
    }
    assert sample(messages.DEAD_LETTERS, queue=Queue.search_index) == 2
    assert sample(messages.WAITING, queue=Queue.search_index) == 0
    assert queue_depth("search-index") == 0
    assert queue_depth("search-index.dead") == 2
    dead = rabbitmq_connection()
    bodies = {}
    channel = dead.channel()
    for _ in range(2):
        _, properties, body = channel.basic_get("search-index.dead", auto_ack=True)
        bodies[body] = (properties.headers or {}).get("x-attempt", 1)
    dead.close()
    assert bodies == {b"{not json": 1, json.dumps({"animal_id": "poison"}).encode(): 3}


@pytest.mark.integration
def test_a_failing_handler_leaves_the_message_in_the_queue(rabbitmq):
    """Ack only after the work: a consumer that dies mid-message loses nothing."""
    queue_posts(rabbitmq, ["a"])
    relay_outbox(rabbitmq)

    def crash(messages):
        raise KeyboardInterrupt  # the process is killed while handling

    with pytest.raises(KeyboardInterrupt):
        consume(Queue.search_index, crash, rabbitmq, idle_seconds=1)
    recorder = Recorder()
    consume(Queue.search_index, recorder, rabbitmq, idle_seconds=1)
    assert recorder.handled == ["a"]


@pytest.mark.integration
def test_messages_wait_in_the_outbox_while_rabbitmq_is_unreachable(rabbitmq, monkeypatch):
    from tests.helpers.services import free_port

    queue_posts(rabbitmq, ["during-outage"])
    monkeypatch.setenv("RABBITMQ_PORT", str(free_port()))  # nothing listens there
    with pytest.raises(pika.exceptions.AMQPConnectionError):
        relay_outbox(rabbitmq)
    with rabbitmq.connect() as connection:
        assert outbox_lag(connection)[0] == 1
    monkeypatch.setenv("RABBITMQ_PORT", "5672")  # the broker is back
    assert relay_outbox(rabbitmq) == 1
    recorder = Recorder()
    consume(Queue.search_index, recorder, rabbitmq, idle_seconds=1)
    assert recorder.handled == ["during-outage"]


@pytest.mark.integration
def test_topology_declares_dead_letter_queues(rabbitmq):
    connection = rabbitmq_connection()
    channel = connection.channel()
    declare_topology(channel)
    for queue in Queue:
        channel.queue_declare(queue, passive=True)
        channel.queue_declare(f"{queue}.dead", passive=True)
    connection.close()


@pytest.mark.integration
def test_no_queue_is_declared_that_nothing_consumes(rabbitmq):
    """An unread queue would grow with every post: the relay declares the queues of
    consumers that exist (each is some component's command), and no other."""
    relay_outbox(rabbitmq)
    connection = rabbitmq_connection()
    for queue in QUEUES:
        connection.channel().queue_declare(queue, passive=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
        connection.channel().queue_declare("similar-images", passive=True)  # not yet built
    connection.close()


@pytest.mark.integration
def test_a_message_no_queue_takes_is_parked_and_the_relay_goes_on(rabbitmq):
    """Issue 10, item 7: an unknown topic blocked the relay for good and the message
    before it was published again on every run."""
    queue_posts(rabbitmq, ["before"])
    with rabbitmq.begin() as connection:
        connection.execute(
            insert(OutboxMessage).values(topic="animal.unknown", payload={"animal_id": "x"})
        )
    queue_posts(rabbitmq, ["after"])
    assert relay_outbox(rabbitmq) == 2
    assert relay_outbox(rabbitmq) == 0  # nothing is published twice, nothing blocks
    assert queue_depth(Queue.search_index) == 2
    with rabbitmq.connect() as connection:
        parked = connection.execute(
            select(OutboxMessage.topic, OutboxMessage.parked_reason).where(
                OutboxMessage.parked_reason.is_not(None)
            )
        ).all()
        assert parked == [("animal.unknown", "no queue takes topic 'animal.unknown'")]
        assert outbox_lag(connection)[0] == 0  # parked is not waiting
    recorder = Recorder()
    consume(Queue.search_index, recorder, rabbitmq, idle_seconds=1)
    assert recorder.handled == ["before", "after"]


@pytest.mark.integration
def test_a_garbage_attempt_header_is_retried_boundedly_and_blocks_nothing(rabbitmq, monkeypatch):
    """Issue 10, item 12: a message with `x-attempt: garbage` crash-looped the consumer."""
    monkeypatch.setenv("RABBITMQ_MAX_ATTEMPTS", "3")
    connection = rabbitmq_connection()
    channel = connection.channel()
    declare_topology(channel)
    for animal_id, attempt in (("garbage", "not-a-number"), ("negative", -5)):
        channel.basic_publish(
            messages.EXCHANGE,
            Topic.animal_created,
            json.dumps({"animal_id": animal_id}).encode(),
            pika.BasicProperties(type=Topic.animal_created, headers={"x-attempt": attempt}),
        )
    connection.close()
    queue_posts(rabbitmq, ["fine"])
    relay_outbox(rabbitmq)
    recorder = Recorder(poison={"garbage", "negative"})
    stats = consume(Queue.search_index, recorder, rabbitmq, idle_seconds=1)
    assert recorder.handled == ["fine"]
    assert stats.dead_lettered == 2 and stats.retried == 4  # 3 deliveries each, as any
    assert queue_depth(f"{Queue.search_index}.dead") == 2


class Outage:
    """A handler whose service is down for its first `failures` calls (Redis restarting)."""

    def __init__(self, failures: int):
        self.failures, self.handled = failures, []

    def __call__(self, messages: list[Message]) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("the cache is restarting")
        self.handled += [m.payload["animal_id"] for m in messages]


@pytest.mark.integration
def test_a_short_outage_is_waited_out_not_dead_lettered(rabbitmq, monkeypatch):
    """Issue 10, item 5: 20 messages in flight were dead-lettered by a short outage."""
    monkeypatch.setenv("RABBITMQ_MAX_ATTEMPTS", "3")
    ids = [f"p{i}" for i in range(20)]
    queue_posts(rabbitmq, ids)
    relay_outbox(rabbitmq)
    outage = Outage(failures=21)  # the batch, then each message once alone
    stats = consume(Queue.search_index, outage, rabbitmq, idle_seconds=1)
    assert sorted(outage.handled) == sorted(ids)
    assert stats.dead_lettered == 0 and stats.retried == 20
    assert queue_depth(f"{Queue.search_index}.dead") == 0
    # The retry waited in a queue whose TTL is the backoff, not at the main queue's tail.
    assert messages.retry_queue(Queue.search_index, 1) == "search-index.retry.50ms"


def test_the_default_backoff_outlasts_minutes_of_outage(monkeypatch):
    """Issue 32, item 3: 1 s + 2 s of retries dead-lettered every post a classifier outage
    of a few seconds reached. The default waits outlast minutes, and none is longer than
    30 s, so a message is handled soon after the service returns."""
    for variable in ("RABBITMQ_MAX_ATTEMPTS", "RABBITMQ_RETRY_BASE_SECONDS"):
        monkeypatch.delenv(variable)
    attempts = messages.rabbitmq_settings().max_attempts
    waits = [messages.retry_delay_ms(attempt) / 1000 for attempt in range(1, attempts)]
    assert waits[:6] == [1, 2, 4, 8, 16, 30] and max(waits) == 30
    assert sum(waits) >= 180
    # The capped waits share one retry queue.
    queues = {messages.retry_queue(Queue.violation_detection, a) for a in range(1, attempts)}
    assert len(queues) == 6


def test_a_short_outage_is_waited_out_locally(engine):
    queue_posts(engine, ["a", "b"])
    outage = Outage(failures=3)
    stats = consume(Queue.search_index, outage, engine, idle_seconds=0.2)
    assert sorted(outage.handled) == ["a", "b"] and stats.dead_lettered == 0


@pytest.mark.integration
def test_a_message_no_retry_can_fix_is_dead_lettered_at_once(rabbitmq):
    from mlsys.aianimals.indexing import InvalidMessage

    def handler(batch):
        if any("animal_id" not in m.payload for m in batch):
            raise InvalidMessage("no animal_id")

    with rabbitmq.begin() as connection:
        add_to_outbox(connection, Topic.animal_created, [{"no": "id"}])
    relay_outbox(rabbitmq)
    stats = consume(Queue.search_index, handler, rabbitmq, idle_seconds=1)
    assert (stats.dead_lettered, stats.retried) == (1, 0)


@pytest.mark.integration
def test_dead_letters_are_replayed_once_the_fault_is_fixed(rabbitmq):
    queue_posts(rabbitmq, ["poison", "fine"])
    relay_outbox(rabbitmq)
    consume(Queue.search_index, Recorder(poison={"poison"}), rabbitmq, idle_seconds=1)
    assert queue_depth(f"{Queue.search_index}.dead") == 1
    assert replay_dead_letters(Queue.search_index, rabbitmq) == 1
    assert queue_depth(f"{Queue.search_index}.dead") == 0
    fixed = Recorder()
    stats = consume(Queue.search_index, fixed, rabbitmq, idle_seconds=1)
    assert fixed.handled == ["poison"] and stats.retried == 0  # attempts start again


def test_dead_letters_are_replayed_locally(engine):
    queue_posts(engine, ["poison", "fine"])
    consume(Queue.search_index, Recorder(poison={"poison"}), engine, idle_seconds=0.2)
    assert replay_dead_letters(Queue.search_index, engine) == 1
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(DeadLetter)) == 0
    fixed = Recorder()
    consume(Queue.search_index, fixed, engine, idle_seconds=0.2)
    assert fixed.handled == ["poison"]


@pytest.mark.parametrize(
    ("component", "command", "queue", "sig"),
    [  # SIGTERM: Kubernetes stopping the pod; SIGINT: Ctrl-C
        ("mlsys.batch", "search-index", Queue.search_index, signal.SIGTERM),
        ("mlsys.search", "features-consumer", Queue.ranking_features, signal.SIGINT),
    ],
)
def test_a_consumer_command_stops_on_a_signal_after_its_batch(
    component, command, queue, sig, tmp_path
):
    """Every consumer's command runs through messages.run_consumer: a signal ends it
    cleanly (exit 0, its summary printed), never a traceback halfway through a batch. While
    it runs it serves its metrics on METRICS_PORT."""
    log, port = tmp_path / "consumer.log", free_port()
    with log.open("w") as stderr:
        consumer = subprocess.Popen(
            [sys.executable, "-m", component, command],
            cwd=ROOT,
            env=os.environ | {"METRICS_PORT": str(port)},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:  # the consumer says when it consumes
        wait_until(lambda: "consuming queue=" in log.read_text(), timeout=60)
        samples = scrape(f"http://127.0.0.1:{port}/metrics")
        assert samples[("consumer_queue_messages", frozenset({("queue", queue)}))] == 0
        assert samples[("consumer_dead_letters", frozenset({("queue", queue)}))] == 0
        consumer.send_signal(sig)
        stdout, _ = consumer.communicate(timeout=30)
    finally:
        consumer.kill()
    assert consumer.returncode == 0, log.read_text()
    assert stdout.startswith("handled: 0, retried: 0, dead-lettered: 0"), stdout
