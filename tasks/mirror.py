"""The Celery mirror of QUEUED jobs: one queue per (application, version), kombu underneath.

A message is a Celery task message `convhub.convert(job_id)`, so push-style factories can consume
the same queues as Celery workers. The database stays the authority: a message whose job is no
longer QUEUED is dropped wherever it is met.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Collection, Sequence
from typing import TypeVar

from celery import Celery
from kombu import Queue
from kombu.utils.uuid import uuid
from sqlalchemy import Integer, Select, Table, bindparam, delete, func, select, text

from app.domain.errors import Unavailable
from app.domain.matching import queue_name
from tasks.celery_app import CONVERT_TASK, pair_queue

log = logging.getLogger("convhub.mirror")
T = TypeVar("T")


def message_job_id(body: object) -> int | None:
    """Job id of a Celery protocol-2 message body `[args, kwargs, embed]`."""
    try:
        args = body[0] if isinstance(body, list | tuple) else None  # type: ignore[index]
        return int(args[0]) if args else None  # type: ignore[index]
    except (TypeError, ValueError, IndexError, KeyError):
        return None


def header_job_id(headers: object) -> int | None:
    """Job id from a Celery protocol-2 message's `argsrepr` header (`[123]`), without decoding the body."""
    try:
        text_ = headers.get("argsrepr")  # type: ignore[attr-defined]
        if isinstance(text_, bytes):
            text_ = text_.decode()
        if isinstance(text_, str) and text_[:1] in "[(":
            return int(text_[1:].split(",", 1)[0].rstrip("])"))
    except (AttributeError, ValueError, UnicodeDecodeError):
        pass
    return None


_ARGSREPR = re.compile(r'"argsrepr":\s*"[\[\(](\d+)')


def _payload_job_id(raw: str | bytes) -> int | None:
    """Job id from the `argsrepr` header inside a message as kombu stores it (a JSON envelope), by
    pattern: no decoding (the Redis script's pattern)."""
    found = _ARGSREPR.search(raw if isinstance(raw, str) else raw.decode("utf-8", "replace"))
    return int(found.group(1)) if found else None


def _amqp_body_job_id(msg) -> int | None:  # type: ignore[no-untyped-def]
    """Job id from an AMQP message's JSON body (a message without the `argsrepr` header)."""
    try:
        return message_job_id(json.loads(msg.body))
    except (ValueError, TypeError):
        return None


# Redis and the SQL broker: how many messages from the head a drain pass looks at for the owed jobs'
# messages, beyond one per job owed (and reconciliation's trim per step). A message beyond it (or
# already taken by someone else) is left alone: it goes stale, and reconciliation's trimming drops
# stale heads. So no removal scans the queue.
WINDOW = 50


def envelope_job_id(raw: bytes | str) -> int | None:
    """Job id of a message as kombu stores it on Redis and in SQL (a JSON envelope whose body is
    the base64 of the Celery message)."""
    try:
        envelope = json.loads(raw)
        return message_job_id(json.loads(base64.b64decode(envelope["body"])))
    except (ValueError, TypeError, KeyError):
        return None


# The drain's pass on Redis (one EVALSHA for a batch of claims): look at the head window (WINDOW plus
# one per job owed) once, mark each owed job's message where it is (LSET near the head end: cheap),
# then take the marks out with one LREM from the head end that stops after the last of them. The
# marker cannot be a kombu message (not JSON). Returns how many were taken.
_REDIS_TAKE_MANY = """
local want, n = {}, 0
for i = 2, #ARGV do want[ARGV[i]] = true; n = n + 1 end
local msgs = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[1]), -1)
local taken = 0
for i = #msgs, 1, -1 do
  local id = string.match(msgs[i], '"argsrepr":%s*"[%[%(](%d+)')
  if id and want[id] then
    redis.call('LSET', KEYS[1], i - #msgs - 1, 'convhub:taken')
    want[id] = nil
    taken = taken + 1
    if taken == n then break end
  end
end
if taken > 0 then redis.call('LREM', KEYS[1], -taken, 'convhub:taken') end
return taken
"""


@functools.cache
def _sql_head(message: Table, queue: Table) -> Select[tuple[int, str]]:
    """The `:window` visible rows at the head of the queue named `:queue` (kombu's order: timestamp,
    id), id and payload. Walks kombu's (timestamp, id) index and stops after that many rows. `visible`
    is wrapped so that SQLite cannot pick kombu's index on it: with no statistics (kombu never runs
    ANALYZE) it would, and then sort the whole queue each time (kombu's own get does)."""
    queue_id = select(queue.c.id).where(queue.c.name == bindparam("queue")).scalar_subquery()
    return (
        select(message.c.id, message.c.payload)
        .where(message.c.queue_id == queue_id, func.coalesce(message.c.visible, False).is_(True))
        .order_by(message.c.timestamp, message.c.id)
        .limit(bindparam("window", type_=Integer))
    )


_SQLITE_WRITERS: dict[str, threading.Lock] = {}
_SQLITE_WRITERS_LOCK = threading.Lock()


def _sqlite_writer(url: str) -> threading.Lock:
    """This process's lock for writing the SQLite broker file at `url`."""
    with _SQLITE_WRITERS_LOCK:
        return _SQLITE_WRITERS.setdefault(url, threading.Lock())


# The database's answer to "which of these jobs are still QUEUED and claimable?"
QueuedAmong = Callable[[Sequence[int]], Collection[int]]


class BrokerDown(Unavailable):
    """The broker failed recently; mirror work is skipped until the back-off ends."""


class KombuMirror:
    """Mirror operations with a circuit breaker: after a broker failure, publishes and removals are
    skipped (fast) for `backoff_seconds`, so a broker outage never slows submits or polls; the
    reconciliation beat task re-publishes what was skipped."""

    def __init__(
        self, app: Celery, *, backoff_seconds: float = 5.0, monotonic: Callable[[], float] = time.monotonic, queue_sqlite_writers: bool = True
    ) -> None:
        self.app = app
        self.queue_sqlite_writers = queue_sqlite_writers
        self.backoff_seconds = backoff_seconds
        self._monotonic = monotonic
        self._down_until = 0.0
        self._declared: set[str] = set()
        self._lock = threading.Lock()
        self._scripts: dict[str, object] = {}
        self._drain: RemovalDrain | None = None

    def _guard(self) -> None:
        if self._monotonic() < self._down_until:
            raise BrokerDown("broker unavailable (recent failure)")

    def _tripped(self, exc: BaseException) -> None:
        self._down_until = self._monotonic() + self.backoff_seconds
        log.warning("mirror: broker unavailable (%s); skipping broker work for %.0fs", exc.__class__.__name__, self.backoff_seconds)

    def _call(self, fn: Callable[[], T]) -> T:
        self._guard()
        try:
            return fn()
        except BrokerDown:
            raise
        except Exception as exc:
            self._tripped(exc)
            raise

    def _bound(self, conn, application: str, version: str) -> Queue:  # type: ignore[no-untyped-def]
        q = pair_queue(application, version)
        bound = q.bind(conn.default_channel)
        with self._lock:
            fresh = q.name not in self._declared
        if fresh:
            bound.declare()
            with self._lock:
                self._declared.add(q.name)
        return bound

    def publish(self, job_id: int, application: str, version: str) -> None:
        self._call(lambda: self._publish(job_id, application, version))

    def _publish(self, job_id: int, application: str, version: str) -> None:
        q = pair_queue(application, version)
        self.app.send_task(
            CONVERT_TASK,
            args=[job_id],
            queue=q,
            exchange=q.exchange,
            routing_key=q.routing_key,
            declare=[q],
            retry=False,
        )

    def publish_many(self, jobs: list[tuple[int, str, str]]) -> None:
        """The same messages as `publish`, for a batch (a reclaim of thousands of leases): one
        producer (one pooled connection) for all of them, grouped with kombu's `Producer.batch`
        (pipelined on Redis: one round trip per 1,000 messages), sent through the default exchange
        (it delivers by queue name to the pair's queue, without the Redis transport's routing
        lookup per message), and built with Celery's message builder but without `send_task`'s
        per-message work (routing, signals, a task-sent event each): about 0.2 ms a message
        instead of 2 ms on a loaded 2-core machine."""
        if jobs:
            self._call(lambda: self._publish_many(jobs))

    def _publish_many(self, jobs: list[tuple[int, str, str]]) -> None:
        queues: dict[tuple[str, str], Queue] = {}
        build = self.app.amqp.as_task_v2
        with self.app.producer_pool.acquire(block=True, timeout=5) as producer, producer.batch():
            for job_id, application, version in jobs:
                q = queues.get((application, version))
                declare = q is None
                if q is None:
                    q = queues[(application, version)] = pair_queue(application, version)
                headers, properties, body, _ = build(uuid(), CONVERT_TASK, args=[job_id])
                producer.publish(
                    body, exchange="", routing_key=q.name, serializer="json", headers=headers, delivery_mode=2,
                    declare=[q] if declare else None, retry=False, **properties,
                )

    def remove(self, job_id: int, application: str, version: str, queued_among: QueuedAmong) -> None:
        self._call(lambda: self._remove(job_id, application, version, queued_among))

    def _remove(self, job_id: int, application: str, version: str, queued_among: QueuedAmong) -> None:
        self._removal_drain().owe(queue_name(application, version), (application, version), job_id, queued_among)

    def _removal_drain(self) -> RemovalDrain:
        with self._lock:
            if self._drain is None:
                self._drain = RemovalDrain(self)
            return self._drain

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until the removals owed so far are done (tests, queue lengths, a clean stop); True
        when they are."""
        drain = self._drain
        return True if drain is None else drain.settle(timeout)

    def trim(self, application: str, version: str, is_queued: Callable[[int], bool], limit: int) -> int:
        return self._call(lambda: self._trim(application, version, is_queued, limit))

    def _trim(self, application: str, version: str, is_queued: Callable[[int], bool], limit: int) -> int:
        dropped = 0
        with self.app.pool.acquire(block=True, timeout=5) as conn:
            q = self._bound(conn, application, version)
            if conn.transport.driver_type == "sql":
                return self._trim_sql(conn.default_channel, q.name, is_queued, limit)
            while dropped < limit:
                msg = q.get(no_ack=False, accept=["json"])
                if msg is None:
                    break
                jid = message_job_id(msg.payload)
                if jid is not None and is_queued(jid):
                    msg.requeue()  # a live message: the stale ones behind it drain as claims reach them
                    break
                msg.ack()
                dropped += 1
        return dropped

    @staticmethod
    def _trim_sql(channel, queue: str, is_queued: Callable[[int], bool], limit: int) -> int:  # type: ignore[no-untyped-def]
        """The embedded broker: read the head rows a window at a time and delete the stale ones by
        id, up to the first live message. Not kombu's get: it sorts the whole queue per message
        (see `_sql_head`), and its requeue of the live message would move it to the tail."""
        message = channel.message_cls.__table__
        head, session = _sql_head(message, channel.queue_cls.__table__), channel.session
        dropped = 0
        try:
            while dropped < limit:
                rows = session.execute(head, {"queue": queue, "window": WINDOW}).all()
                stale, live = [], False
                for row_id, raw in rows[: limit - dropped]:
                    jid = envelope_job_id(raw)
                    if jid is not None and is_queued(jid):
                        live = True
                        break
                    stale.append(row_id)
                if stale:
                    session.execute(delete(message).where(message.c.id.in_(stale)))
                session.commit()
                dropped += len(stale)
                if live or not stale or len(rows) < WINDOW:
                    break
        except BaseException:
            session.rollback()
            raise
        return dropped

    def _script(self, client, name: str, src: str):  # type: ignore[no-untyped-def]
        """A registered Lua script (EVALSHA; loaded again by redis-py after a broker restart)."""
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = client.register_script(src)
        return script

    def sweep_consumed(self, batch: int = 10_000) -> int:
        """Embedded SQL broker only: delete the rows of messages already taken.

        kombu's SQLAlchemy transport marks a taken message invisible and never deletes it (acks and
        requeues are in memory; a requeue inserts a new row), so without this the broker database
        grows by every message ever sent. Returns how many rows went; 0 on other brokers."""
        with self.app.pool.acquire(block=True, timeout=5) as conn:
            if conn.transport.driver_type != "sql":
                return 0
            channel = conn.default_channel
            model, session = channel.message_cls, channel.session
            total = 0
            while True:
                ids = [i for (i,) in session.query(model.id).filter(model.visible.is_(False)).limit(batch)]
                if ids:
                    session.query(model).filter(model.id.in_(ids)).delete(synchronize_session=False)
                session.commit()
                total += len(ids)
                if len(ids) < batch:
                    return total

    def queue_length(self, application: str, version: str) -> int | None:
        """Messages ready in the pair's queue. Declares the queue, its exchange and its binding
        again on the broker first (not from memory): this is reconciliation's probe, and a broker
        that lost its data (Redis FLUSHDB or a restart without persistence, a deleted RabbitMQ
        queue) lost the routing too, while every process still remembers the queue as declared and
        would publish into nothing.

        The probe asks the broker even while the breaker is open, and closes it when the broker
        answers: the repair starts at the first reconciliation after the broker is back, not a
        back-off later. A pooled connection that died with the broker's restart gets one more try
        on a new connection.

        The removals this process owes are done first (within ~0.1 s), so the count does not
        include messages of jobs already handed out here."""
        self.settle(5.0)
        try:
            with self.app.pool.acquire(block=True, timeout=5) as conn:
                n = self._declare_and_count(conn, application, version)
        except Exception:  # noqa: BLE001 - a dead pooled connection: ask once more on a new one
            try:
                with self.app.connection_for_write() as conn:
                    n = self._declare_and_count(conn, application, version)
            except Exception as exc:
                self._tripped(exc)
                raise BrokerDown(f"broker unavailable ({exc.__class__.__name__})") from exc
        self._down_until = 0.0
        return n

    def _declare_and_count(self, conn, application: str, version: str) -> int:  # type: ignore[no-untyped-def]
        q = self._declare_on_broker(conn, application, version)
        with self._lock:
            self._declared.add(q.name)
        return int(q.queue_declare().message_count)

    @staticmethod
    def _declare_on_broker(conn, application: str, version: str) -> Queue:  # type: ignore[no-untyped-def]
        """Declare the pair's exchange, queue and binding on the broker, whatever this process
        remembers. RabbitMQ: a plain declare does it. Redis: kombu's virtual transport skips a
        binding its in-memory state already has, so the binding's set entry (gone with a FLUSHDB)
        is written again through the transport's own binder."""
        q = pair_queue(application, version)
        bound = q.bind(conn.default_channel)
        bound.declare()
        if conn.transport.driver_type == "redis":
            channel, ex = conn.default_channel, q.exchange.name
            channel._queue_bind(ex, *channel.typeof(ex).prepare_bind(q.name, ex, q.routing_key, None))
        return bound

    def declare(self, pairs: list[tuple[str, str]]) -> None:
        with self.app.pool.acquire(block=True, timeout=5) as conn:
            for a, v in pairs:
                self._bound(conn, a, v)

    def rebuild(self, application: str, version: str, job_ids: list[int]) -> int:
        """Purge the pair's queue and publish these jobs' messages, oldest first; then read the
        queue's length back and return it (what is verified, not what was sent). A short queue is
        declared again and rebuilt once more, then reported loudly."""
        have = 0
        for attempt in (1, 2):
            with self.app.pool.acquire(block=True, timeout=5) as conn:
                self._declare_on_broker(conn, application, version).purge()
            for jid in job_ids:
                self.publish(jid, application, version)
            with self.app.pool.acquire(block=True, timeout=5) as conn:
                have = self._declare_and_count(conn, application, version)
            # More than sent: jobs submitted meanwhile. Fewer: lost on the way (or claimed meanwhile).
            if have >= len(job_ids) or attempt == 2:
                break
            log.warning("mirror: %s|%s holds %d of %d messages after a rebuild; rebuilding again", application, version, have, len(job_ids))
        if have < len(job_ids):
            log.warning("mirror: rebuilt %s|%s but it holds %d of %d messages (verified)", application, version, have, len(job_ids))
        else:
            log.info("mirror: rebuilt %s|%s: %d messages sent, %d in the queue (verified)", application, version, len(job_ids), have)
        return have

    def ping(self) -> None:
        """Health check: always asks the broker (not the breaker), and resets the breaker on success."""
        with self.app.pool.acquire(block=True, timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        self._down_until = 0.0


class RemovalDrain:
    """Takes claimed jobs' messages off their queues in batches, on a thread of its own, on every
    broker. A claim only notes what it owes its queue (no broker round trip); the thread gathers
    the notes for GATHER_SECONDS and then makes one pass per queue owed.

    The embedded SQL broker: one read of the head window and one DELETE by id per pass
    (`_pass_sql`); one DELETE per claim had become half of a ~1 ms claim (0.45x).

    Redis: one script for the pass (`_REDIS_TAKE_MANY`: the head window looked at once, each owed
    job's message taken where it is). Per claim, the single-message script (50 head messages read
    and matched per call) became the larger part of a claim once claims took ~1 ms: the claim rate
    with the mirror fell to 0.59x that without it.

    RabbitMQ can only hand out a queue's head. A claim's removal as one `basic.get` (a synchronous
    round trip) plus an ack, 16 claimers at once, cost ~0.5 ms of the claimer's CPU and ~0.25 ms of
    RabbitMQ's per message, and a database look-up whenever the head was another claim's job:
    the claim rate fell to 0.6-0.7x that without a mirror. Here a claim only counts what it owes
    its queue (no broker round trip); the drain thread then, per queue owed, consumes that many
    messages from the head (prefetch, pipelined deliveries), stops its consumer, asks the database
    once which of their jobs are still QUEUED (`queued_among`), acks the others (one multiple ack
    for the stale run from the head) and hands the live ones back (rejected with requeue: a classic
    queue puts them back in their place). ~60 us of Python and ~30 us of RabbitMQ per message.

    Exact, whatever claimed the jobs (this process, another, a push factory): the database decides.
    A claimed job's message it does not reach (deeper than the messages owed, behind a live head)
    goes stale, as before, and reconciliation's trim drops it. A broker failure opens the mirror's
    breaker and forgets what was owed (trim again). The thread starts with the first removal in a
    process (so never before a fork) and ends after IDLE_SECONDS without work, closing its
    connection."""

    BATCH = 500  # messages per queue per pass, at most
    WAIT_SECONDS = 0.05  # a pass ends when no delivery came for this long
    IDLE_SECONDS = 10.0
    GATHER_SECONDS = 0.1

    def __init__(self, mirror: KombuMirror) -> None:
        self._mirror = mirror
        self._cond = threading.Condition()
        self._owed: dict[str, list[int]] = {}
        self._pairs: dict[str, tuple[str, str]] = {}
        self._queued_among: QueuedAmong | None = None
        self._thread: threading.Thread | None = None
        self._busy = False

    def owe(self, queue: str, pair: tuple[str, str], job_id: int, queued_among: QueuedAmong) -> None:
        with self._cond:
            self._owed.setdefault(queue, []).append(job_id)
            self._pairs[queue] = pair
            self._queued_among = queued_among
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="convhub-mirror-drain", daemon=True)
                self._thread.start()
            self._cond.notify()

    def settle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._owed or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _run(self) -> None:
        conn = None
        try:
            while True:
                with self._cond:
                    if not self._owed:
                        self._cond.wait(self.IDLE_SECONDS)
                    if not self._owed:
                        self._thread = None
                        return
                # Let a busy moment's claims gather into one pass (a pass costs its round trips
                # whatever its size: RabbitMQ's 3 and a query, Redis's script, SQL's 2 statements).
                time.sleep(self.GATHER_SECONDS)
                with self._cond:
                    owed, self._owed = self._owed, {}
                    pairs, queued_among = dict(self._pairs), self._queued_among
                    self._busy = True
                try:
                    self._mirror._guard()
                    if conn is None:
                        conn = self._mirror.app.connection_for_write()
                        conn.ensure_connection(max_retries=1)
                    for queue, ids in owed.items():
                        with self._mirror._lock:
                            fresh = queue not in self._mirror._declared
                        if fresh:
                            self._mirror._bound(conn, *pairs[queue])
                        assert queued_among is not None
                        driver = conn.transport.driver_type
                        if driver == "redis":
                            self._pass_redis(conn, queue, ids[: self.BATCH])
                        elif driver == "sql":
                            self._pass_sql(conn, queue, ids[: self.BATCH])
                        else:
                            self._pass(conn, queue, min(len(ids), self.BATCH), queued_among)
                except BrokerDown:
                    pass  # the breaker is open: what was owed goes stale, reconciliation trims it
                except Exception as exc:  # noqa: BLE001 - a broker failure; the database is the authority
                    self._mirror._tripped(exc)
                    if conn is not None:
                        with contextlib.suppress(Exception):
                            conn.release()
                    conn = None
                finally:
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
        finally:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.release()

    def _pass_redis(self, conn, queue: str, ids: list[int]) -> None:  # type: ignore[no-untyped-def]
        """Take these jobs' messages out where they are among the head window: one round trip."""
        channel = conn.default_channel
        client, key = channel.client, channel._q_for_pri(queue, 0)
        window = WINDOW + len(ids)
        self._mirror._script(client, "take_many", _REDIS_TAKE_MANY)(keys=[key], args=[window, *ids], client=client)

    def _pass_sql(self, conn, queue: str, ids: list[int]) -> None:  # type: ignore[no-untyped-def]
        """kombu's SQL broker (the embedded default): read the head window (WINDOW plus one per job
        owed; an index walk, see `_sql_head`), then one DELETE of the owed jobs' rows by id, in one
        write transaction. A message beyond the window, or one already taken, is left alone and goes
        stale (reconciliation trims stale heads).

        SQLite: passes of one process take turns on a lock of the file's own with the other
        writers (`queue_sqlite_writers`) instead of SQLite's busy handler, which polls with sleeps
        of up to 100 ms."""
        channel = conn.default_channel
        session, message = channel.session, channel.message_cls.__table__
        head = _sql_head(message, channel.queue_cls.__table__)
        sqlite = session.bind.name == "sqlite"
        writer = _sqlite_writer(str(session.bind.url)) if sqlite and self._mirror.queue_sqlite_writers else contextlib.nullcontext()
        with writer:
            try:
                if sqlite:
                    session.execute(text("BEGIN IMMEDIATE TRANSACTION"))  # as kombu's own get: no lock upgrade
                want, take = set(ids), []
                for row_id, raw in session.execute(head, {"queue": queue, "window": WINDOW + len(ids)}):
                    jid = _payload_job_id(raw)
                    if jid in want:
                        want.discard(jid)
                        take.append(row_id)
                if take:
                    session.execute(delete(message).where(message.c.id.in_(take)))
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def _pass(self, conn, queue: str, n: int, queued_among: QueuedAmong) -> None:  # type: ignore[no-untyped-def]
        """Consume up to `n` messages from the head of `queue`, then keep the live ones and drop
        the rest. Round trips: qos, consume, cancel, and one database query."""
        channel, raw = conn.default_channel, conn.connection
        got: list = []  # type: ignore[type-arg]
        channel.basic_qos(0, n, False)
        tag = channel.basic_consume(queue, no_ack=False, callback=got.append)
        try:
            while len(got) < n:  # until the owed messages came, or none came for WAIT_SECONDS
                try:
                    raw.drain_events(timeout=self.WAIT_SECONDS)
                except TimeoutError:
                    break
        finally:
            channel.basic_cancel(tag)  # deliveries already on the way arrive before its reply
        if not got:
            return
        ids = [header_job_id(m.headers) or _amqp_body_job_id(m) for m in got]
        live = set(queued_among([i for i in ids if i is not None]))
        run = 0  # the stale messages from the head: one multiple ack
        while run < len(got) and (ids[run] is None or ids[run] not in live):
            run += 1
        if run:
            channel.basic_ack(got[run - 1].delivery_tag, multiple=True)
        for msg, jid in zip(got[run:], ids[run:], strict=True):
            if jid is not None and jid in live:
                channel.basic_reject(msg.delivery_tag, requeue=True)
            else:
                channel.basic_ack(msg.delivery_tag)
