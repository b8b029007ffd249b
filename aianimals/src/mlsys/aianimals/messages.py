"""Messages between components: a transactional outbox, its relay, and consumers.

A change and the message announcing it are committed together (`add_to_outbox` in the
change's transaction), so a broker outage loses nothing: the message waits in the outbox.

- services profile: `relay_outbox` publishes waiting messages to RabbitMQ with publisher
  confirms and stamps them published; consumers read their RabbitMQ queue.
- local profile: consumers read the outbox table itself, each keeping its own offset.

Consumers ack only after the handler returned (its work committed), retry a failing
message up to `RABBITMQ_MAX_ATTEMPTS` deliveries, then dead-letter it and go on. Handlers
must be idempotent: a message can be delivered more than once.

Each consumer counts its messages by outcome, times its handler and measures its queue and
its dead letters (`consumer_*{queue}`); the relay counts what it published and parked
(`outbox_*_total`). Both serve them on METRICS_PORT.
"""

import json
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import Connection, Engine, Row, delete, func, insert, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from mlsys.aianimals.database import get_engine, upgrade_or_wait
from mlsys.aianimals.tables import ConsumerOffset, DeadLetter, OutboxMessage
from mlsys.common.logging import get_logger
from mlsys.common.metrics import serve_worker_metrics
from mlsys.common.settings import Profile, platform_settings, rabbitmq_settings

log = get_logger(__name__)

EXCHANGE = "aianimals"
DEAD_LETTER_EXCHANGE = "aianimals.dead"


class Topic(StrEnum):
    """What a message announces (its routing key); the payload names the post (or the
    sign-up)."""

    animal_created = "animal.created"
    animal_updated = "animal.updated"  # liked, unliked, deactivated
    user_registered = "user.registered"  # a sign-up to mail (`{"registration_id": ...}`)


class Queue(StrEnum):
    """A consumer's queue (`<queue>.dead` holds what it gave up on)."""

    search_index = "search-index"
    ranking_features = "ranking-features"
    violation_detection = "violation-detection"
    image_index = "image-index"
    account_mail = "account-mail"


# Queue -> the topics it receives. Declared by the relay too, so that messages wait for a
# consumer that is not running yet instead of being dropped. Only queues that a consumer
# reads belong here: an unread queue grows with every message.
QUEUES: dict[Queue, list[Topic]] = {
    Queue.search_index: [Topic.animal_created, Topic.animal_updated],
    Queue.ranking_features: [Topic.animal_created, Topic.animal_updated],
    Queue.violation_detection: [Topic.animal_created],  # a new post's photo is judged once
    Queue.image_index: [Topic.animal_created],  # and embedded once, for similar images
    Queue.account_mail: [Topic.user_registered],
}


# --- metrics (by queue: each consumer reads one) -----------------------------------------------

HANDLED = Counter("consumer_messages_handled_total", "Messages handled", ["queue"])
FAILED = Counter("consumer_messages_failed_total", "Deliveries the handler failed", ["queue"])
RETRIED = Counter(
    "consumer_messages_retried_total", "Messages delivered again after a backoff", ["queue"]
)
DEAD_LETTERED = Counter(
    "consumer_messages_dead_lettered_total", "Messages given up on (to dead letters)", ["queue"]
)
HANDLER_SECONDS = Histogram(
    "consumer_handler_duration_seconds",
    "Time the handler took per call (a batch, or one message of a failed batch)",
    ["queue"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WAITING = Gauge("consumer_queue_messages", "Messages waiting in the queue", ["queue"])
DEAD_LETTERS = Gauge(
    "consumer_dead_letters", "Dead letters held for the queue (to replay once fixed)", ["queue"]
)
RELAYED = Counter("outbox_relayed_total", "Outbox messages published to RabbitMQ")
PARKED = Counter("outbox_parked_total", "Outbox messages no queue takes, parked")
MEASURE_EVERY_SECONDS = 5.0  # the queue's gauges: a query or a broker call each time


def add_to_outbox(connection: Connection, topic: Topic, payloads: list[dict]) -> None:
    """Queue messages in the caller's transaction (one statement for many)."""
    if payloads:
        connection.execute(
            insert(OutboxMessage), [{"topic": topic, "payload": p} for p in payloads]
        )


def outbox_lag(connection: Connection) -> tuple[int, float]:
    """Messages not yet handed on, and the age in seconds of the oldest of them.

    Handed on means published to RabbitMQ (services), or read by every consumer that
    has an offset (local).
    """
    waiting = select(OutboxMessage.id, OutboxMessage.created_at)
    if platform_settings().profile is Profile.services:
        waiting = waiting.where(
            OutboxMessage.published_at.is_(None), OutboxMessage.parked_reason.is_(None)
        )
    else:
        slowest = select(func.min(ConsumerOffset.last_message_id)).scalar_subquery()
        waiting = waiting.where(OutboxMessage.id > func.coalesce(slowest, 0))
    rows = waiting.subquery()
    count, oldest = connection.execute(
        select(func.count(), func.min(rows.c.created_at)).select_from(rows)
    ).one()
    if not count:
        return 0, 0.0
    return count, max((datetime.now(UTC) - oldest).total_seconds(), 0.0)


# --- RabbitMQ -----------------------------------------------------------------------------


def rabbitmq_connection() -> pika.BlockingConnection:
    settings = rabbitmq_settings()
    credentials = pika.PlainCredentials(settings.user, settings.password.get_secret_value())
    return pika.BlockingConnection(
        pika.ConnectionParameters(
            host=settings.host,
            port=settings.port,
            virtual_host=settings.vhost,
            credentials=credentials,
            connection_attempts=1,
            socket_timeout=5,
            blocked_connection_timeout=30,
        )
    )


class PermanentFailure(Exception):
    """Raised by a handler for a message that no retry can fix: it is dead-lettered at once."""


def retry_queue(queue: str, attempt: int) -> str:
    """Where a message waits after its `attempt`-th failed delivery: a queue whose TTL is
    the backoff and whose dead letters go back to `queue`. The delay is in the name, so a
    changed base declares new queues instead of clashing (and the capped waits share one)."""
    return f"{queue}.retry.{retry_delay_ms(attempt)}ms"


def retry_delay_ms(attempt: int) -> int:
    """base x 2^(attempt-1), capped at RABBITMQ_RETRY_MAX_SECONDS."""
    settings = rabbitmq_settings()
    delay = min(settings.retry_base_seconds * 2 ** (attempt - 1), settings.retry_max_seconds)
    return int(delay * 1000)


def declare_topology(channel: BlockingChannel) -> None:
    """The exchanges, the queues with their retry and dead-letter queues, and bindings."""
    channel.exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    channel.exchange_declare(DEAD_LETTER_EXCHANGE, exchange_type="direct", durable=True)
    max_attempts = rabbitmq_settings().max_attempts
    for queue, topics in QUEUES.items():
        for attempt in range(1, max_attempts):
            channel.queue_declare(
                retry_queue(queue, attempt),
                durable=True,
                arguments={
                    "x-message-ttl": retry_delay_ms(attempt),
                    "x-dead-letter-exchange": "",  # the default exchange: back to `queue`
                    "x-dead-letter-routing-key": queue,
                },
            )
        channel.queue_declare(f"{queue}.dead", durable=True)
        channel.queue_bind(f"{queue}.dead", DEAD_LETTER_EXCHANGE, routing_key=queue)
        channel.queue_declare(
            queue,
            durable=True,
            arguments={
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                "x-dead-letter-routing-key": queue,
            },
        )
        for topic in topics:
            channel.queue_bind(queue, EXCHANGE, routing_key=topic)


@contextmanager
def confirmed_channel() -> Iterator[BlockingChannel]:
    """A channel on the declared topology with publisher confirms (a publish returns once
    the broker has the message); its connection is closed afterwards."""
    connection = rabbitmq_connection()
    try:
        channel = connection.channel()
        declare_topology(channel)
        channel.confirm_delivery()
        yield channel
    finally:
        if connection.is_open:
            connection.close()


def relay_outbox(engine: Engine, batch_size: int = 500) -> int:
    """Publish every waiting outbox message to RabbitMQ, oldest first; returns how many.

    Each batch is locked (SKIP LOCKED: several relays can run) and published with
    publisher confirms; what the broker confirmed is stamped published in the same
    transaction, also when the broker goes away mid-batch (the rest waits, and the error is
    raised), so a message is published at least once, never lost, and never again once
    confirmed. A message that no queue takes (an unknown topic) is parked with its reason
    and the relay goes on.
    """
    published = 0
    with confirmed_channel() as channel:
        while True:
            with engine.begin() as db:
                rows = db.execute(
                    select(OutboxMessage.id, OutboxMessage.topic, OutboxMessage.payload)
                    .where(OutboxMessage.published_at.is_(None))
                    .where(OutboxMessage.parked_reason.is_(None))
                    .order_by(OutboxMessage.id)
                    .limit(batch_size)
                    .with_for_update(skip_locked=True)
                ).all()
                if not rows:
                    return published
                confirmed, failure = _publish(channel, db, rows)
                if confirmed:
                    db.execute(
                        update(OutboxMessage)
                        .where(OutboxMessage.id.in_(confirmed))
                        .values(published_at=func.now())
                    )
            published += len(confirmed)
            RELAYED.inc(len(confirmed))
            log.info("relayed=%d", published)
            if failure is not None:
                raise failure


def _publish(
    channel: BlockingChannel, db: Connection, rows: Sequence[Row]
) -> tuple[list[int], pika.exceptions.AMQPError | None]:
    """Publish rows in order: the ids the broker confirmed, and the error that stopped the
    batch (None if none did). Unroutable rows are parked in `db` on the way."""
    confirmed: list[int] = []
    for message_id, topic, payload in rows:
        try:
            channel.basic_publish(
                EXCHANGE,
                topic,
                json.dumps(payload).encode(),
                pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=pika.DeliveryMode.Persistent,
                    message_id=str(message_id),
                    type=topic,
                ),
                mandatory=True,  # returned, not dropped, when no queue is bound
            )
        except pika.exceptions.UnroutableError:
            reason = f"no queue takes topic {topic!r}"
            log.error("parked outbox message=%s reason=%s", message_id, reason)
            PARKED.inc()
            db.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message_id)
                .values(parked_reason=reason)
            )
            continue
        except pika.exceptions.AMQPError as error:  # nacked, or the broker went away
            return confirmed, error
        confirmed.append(message_id)
    return confirmed, None


# --- consumers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    id: str
    topic: str
    payload: dict


# Handles a batch of messages; raising makes the consumer retry them one by one, so that
# one poison message is isolated and dead-lettered while the others are handled.
Handler = Callable[[list[Message]], None]
BATCH = 200


@dataclass
class ConsumerStats:
    """A consumer's run so far; every count goes to its queue's counters too."""

    queue: str
    handled: int = 0
    retried: int = 0
    dead_lettered: int = 0
    errors: list[str] = field(default_factory=list)
    permanent: set[str] = field(default_factory=set)  # ids no retry can fix

    def __post_init__(self) -> None:
        for counter in (HANDLED, FAILED, RETRIED, DEAD_LETTERED):
            counter.labels(self.queue)  # a series from the start: 0, not absent

    def count_handled(self, messages: int) -> None:
        self.handled += messages
        HANDLED.labels(self.queue).inc(messages)

    def count_failed(self, message_id: str, error: Exception) -> None:
        self.errors.append(f"{message_id}: {error!r}")
        FAILED.labels(self.queue).inc()

    def count_retried(self, messages: int) -> None:
        self.retried += messages
        RETRIED.labels(self.queue).inc(messages)

    def count_dead_lettered(self) -> None:
        self.dead_lettered += 1
        DEAD_LETTERED.labels(self.queue).inc()

    def __str__(self) -> str:
        """The line a consumer's command prints when it stops."""
        return (
            f"handled: {self.handled}, retried: {self.retried}, dead-lettered: {self.dead_lettered}"
        )


def stop_on_signal() -> Callable[[], bool]:
    """SIGINT and SIGTERM (Ctrl-C, Kubernetes stopping the pod) end a consumer or the
    relay after the batch in hand: nothing is left half-handled."""
    stopping: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _: stopping.append(number))
    return lambda: bool(stopping)


def run_consumer(
    queue: Queue, make_handler: Callable[[Engine], Handler], idle_seconds: float | None
) -> ConsumerStats:
    """What a consumer's command does: wait for the database at head, make the handler
    (loading what it needs before the first message, not on it), serve its metrics, then
    consume `queue` until idle for `idle_seconds` or stopped by a signal."""
    engine = get_engine()
    upgrade_or_wait(engine)
    stop = stop_on_signal()
    serve_worker_metrics()
    handler = make_handler(engine)
    log.info("consuming queue=%s", queue)
    return consume(queue, handler, engine, idle_seconds=idle_seconds, stop=stop)


def consume(
    queue: Queue,
    handler: Handler,
    engine: Engine,
    *,
    idle_seconds: float | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> ConsumerStats:
    """Handle `queue`'s messages until none came for `idle_seconds` (None: until `stop()`)."""
    if platform_settings().profile is Profile.services:
        return _consume_rabbitmq(queue, handler, idle_seconds, stop)
    return _consume_outbox(queue, handler, engine, idle_seconds, stop)


class QueueGauges:
    """A queue's waiting messages and dead letters, measured by `measure` at most every
    MEASURE_EVERY_SECONDS (the loop calls `update` on every turn)."""

    def __init__(self, queue: str, measure: Callable[[], tuple[int, int]]) -> None:
        self.waiting, self.dead = WAITING.labels(queue), DEAD_LETTERS.labels(queue)
        self.measure, self.measured_at = measure, -MEASURE_EVERY_SECONDS

    def update(self) -> None:
        if time.monotonic() - self.measured_at >= MEASURE_EVERY_SECONDS:
            waiting, dead = self.measure()
            self.waiting.set(waiting)
            self.dead.set(dead)
            self.measured_at = time.monotonic()


def _handle(handler: Handler, batch: list[Message], stats: ConsumerStats) -> list[Message]:
    """Handle a batch; returns the messages that failed alone (after a batch failure)."""
    try:
        with HANDLER_SECONDS.labels(stats.queue).time():
            handler(batch)
        stats.count_handled(len(batch))
        return []
    except Exception as error:  # any failure of one message must not stop the rest
        if len(batch) == 1:
            log.warning("message=%s topic=%s failed error=%r", batch[0].id, batch[0].topic, error)
            stats.count_failed(batch[0].id, error)
            if isinstance(error, PermanentFailure):
                stats.permanent.add(batch[0].id)
            return batch
    failed = []
    for message in batch:
        failed += _handle(handler, [message], stats)
    return failed


def _consume_rabbitmq(
    queue: Queue, handler: Handler, idle_seconds: float | None, stop: Callable[[], bool]
) -> ConsumerStats:
    stats, max_attempts = ConsumerStats(queue), rabbitmq_settings().max_attempts
    with confirmed_channel() as channel:  # confirms: a retry is safe before the ack
        channel.basic_qos(prefetch_count=BATCH)
        gauges = QueueGauges(
            queue,
            lambda: (
                channel.queue_declare(queue, passive=True).method.message_count,
                channel.queue_declare(f"{queue}.dead", passive=True).method.message_count,
            ),
        )
        pending: list[tuple[int, pika.BasicProperties, bytes]] = []
        idle_since = time.monotonic()

        def flush() -> None:
            messages, failed = [], set()
            for tag, properties, body in pending:
                try:
                    messages.append(Message(str(tag), properties.type or "", json.loads(body)))
                except ValueError as error:  # not JSON: no retry can fix it
                    stats.count_failed(str(properties.message_id), error)
                    stats.permanent.add(str(tag))
                    failed.add(tag)
            if messages:
                failed |= {int(message.id) for message in _handle(handler, messages, stats)}
            for tag, properties, body in pending:
                if tag in failed:
                    _retry_or_dead_letter(
                        channel, queue, tag, properties, body, max_attempts, stats
                    )
                else:
                    channel.basic_ack(tag)  # acked only after the handler's work is done
            pending.clear()

        for method, properties, body in channel.consume(queue, inactivity_timeout=0.2):
            if method is not None:
                pending.append((method.delivery_tag, properties, body))
                idle_since = time.monotonic()
                if len(pending) < BATCH:
                    continue
            if pending:
                flush()
            gauges.update()
            waited = time.monotonic() - idle_since
            if stop() or (idle_seconds is not None and waited >= idle_seconds):
                break
        channel.cancel()
    return stats


def _attempt(headers: dict | None) -> int:
    """Which delivery this is, from our `x-attempt` header; a header somebody else set to
    anything but a positive number counts as the first (retries stay bounded)."""
    value = (headers or {}).get("x-attempt", 1)
    try:
        attempt = int(value)
    except (TypeError, ValueError):
        return 1
    return attempt if attempt >= 1 else 1


def _retry_or_dead_letter(channel, queue, tag, properties, body, max_attempts, stats) -> None:
    attempt = _attempt(properties.headers)
    if attempt >= max_attempts or str(tag) in stats.permanent:
        channel.basic_nack(tag, requeue=False)  # -> the dead-letter exchange -> queue.dead
        stats.count_dead_lettered()
        log.error("dead-lettered queue=%s message=%s", queue, properties.message_id)
        return
    # Retry after a backoff in the retry queue (the others are not held up: a short outage
    # of a service the handler needs is waited out, not dead-lettered); the copy is
    # confirmed by the broker before the failed delivery is acked, so nothing is lost.
    retry = pika.BasicProperties(
        content_type=properties.content_type,
        delivery_mode=properties.delivery_mode,
        message_id=properties.message_id,
        type=properties.type,
        headers={**(properties.headers or {}), "x-attempt": attempt + 1},
    )
    channel.basic_publish("", retry_queue(queue, attempt), body, retry, mandatory=True)
    channel.basic_ack(tag)
    stats.count_retried(1)


def _consume_outbox(
    queue: Queue,
    handler: Handler,
    engine: Engine,
    idle_seconds: float | None,
    stop: Callable[[], bool],
) -> ConsumerStats:
    stats, max_attempts = ConsumerStats(queue), rabbitmq_settings().max_attempts
    topics = QUEUES[queue]

    def measure() -> tuple[int, int]:
        with engine.connect() as db:
            offset = select(ConsumerOffset.last_message_id).where(ConsumerOffset.consumer == queue)
            waiting = db.scalar(
                select(func.count())
                .select_from(OutboxMessage)
                .where(OutboxMessage.id > func.coalesce(offset.scalar_subquery(), 0))
                .where(OutboxMessage.topic.in_(topics))
            )
            dead = db.scalar(
                select(func.count()).select_from(DeadLetter).where(DeadLetter.consumer == queue)
            )
        return waiting or 0, dead or 0

    gauges = QueueGauges(queue, measure)
    idle_since = time.monotonic()
    while not stop():
        gauges.update()
        with engine.connect() as db:
            offset = db.scalar(
                select(ConsumerOffset.last_message_id).where(ConsumerOffset.consumer == queue)
            )
            rows = db.execute(
                select(OutboxMessage.id, OutboxMessage.topic, OutboxMessage.payload)
                .where(OutboxMessage.id > (offset or 0))
                .order_by(OutboxMessage.id)
                .limit(BATCH)
            ).all()
        if not rows:
            if idle_seconds is not None and time.monotonic() - idle_since >= idle_seconds:
                break
            time.sleep(0.2)
            continue
        idle_since = time.monotonic()
        batch = [Message(str(i), topic, payload) for i, topic, payload in rows if topic in topics]
        failed = _handle(handler, batch, stats) if batch else []
        for attempt in range(1, max_attempts):
            retryable = [m for m in failed if m.id not in stats.permanent]
            if not retryable:
                break
            time.sleep(retry_delay_ms(attempt) / 1000)
            stats.count_retried(len(retryable))
            failed = [m for m in failed if m.id in stats.permanent] + [
                m for message in retryable for m in _handle(handler, [message], stats)
            ]
        with engine.begin() as db:
            for message in failed:
                stats.count_dead_lettered()
                log.error("dead-lettered queue=%s message=%s", queue, message.id)
                db.execute(
                    insert(DeadLetter).values(
                        consumer=queue,
                        message_id=int(message.id),
                        topic=message.topic,
                        payload=message.payload,
                        error=stats.errors[-1] if stats.errors else "",
                    )
                )
            # The offset moves in the same transaction as the dead letters: a crash before
            # it re-handles the batch (handlers are idempotent), never skips it.
            db.execute(
                sqlite_insert(ConsumerOffset)
                .values(consumer=queue, last_message_id=rows[-1].id)
                .on_conflict_do_update(
                    index_elements=["consumer"], set_={"last_message_id": rows[-1].id}
                )
            )
    return stats


# --- dead letters ---------------------------------------------------------------------------


def replay_dead_letters(queue: Queue, engine: Engine) -> int:
    """Give `queue` its dead letters again (once what failed them is fixed); returns how
    many. RabbitMQ: each moves from `<queue>.dead` to `queue` with its attempts reset, the
    copy confirmed before the dead one is acked. Local profile: each goes back into the
    outbox as a new message (every consumer of its topic sees it; handlers are idempotent)."""
    if platform_settings().profile is Profile.services:
        return _replay_rabbitmq(queue)
    with engine.begin() as db:
        dead = db.execute(
            select(DeadLetter.id, DeadLetter.topic, DeadLetter.payload)
            .where(DeadLetter.consumer == queue)
            .order_by(DeadLetter.id)
        ).all()
        for row in dead:
            add_to_outbox(db, Topic(row.topic), [row.payload])
        db.execute(delete(DeadLetter).where(DeadLetter.id.in_([row.id for row in dead])))
    return len(dead)


def _replay_rabbitmq(queue: Queue) -> int:
    replayed = 0
    with confirmed_channel() as channel:
        while True:
            method, properties, body = channel.basic_get(f"{queue}.dead", auto_ack=False)
            if method is None:
                return replayed
            headers = {
                key: value
                for key, value in (properties.headers or {}).items()
                if key != "x-attempt" and not key.startswith("x-death")
                and not key.startswith("x-first-death") and not key.startswith("x-last-death")
            }  # fmt: skip
            fresh = pika.BasicProperties(
                content_type=properties.content_type,
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=properties.message_id,
                type=properties.type,
                headers=headers,
            )
            channel.basic_publish("", queue, body, fresh, mandatory=True)
            channel.basic_ack(method.delivery_tag)
            replayed += 1
