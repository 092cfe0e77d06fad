"""The Celery mirror of QUEUED jobs: one queue per (application, version), kombu underneath.

A message is a Celery task message `convhub.convert(job_id)`, so push-style factories can consume
the same queues as Celery workers. The database stays the authority: a message whose job is no
longer QUEUED is dropped wherever it is met.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from celery import Celery
from kombu import Queue

from tasks.celery_app import CONVERT_TASK, pair_queue

log = logging.getLogger("convhub.mirror")
T = TypeVar("T")

# Heads examined at most per removal: stale messages of deleted or DB-claimed jobs are dropped on
# the way; more than this in a row is left for the next poll.
MAX_SKIP = 50


def message_job_id(body: object) -> int | None:
    """Job id of a Celery protocol-2 message body `[args, kwargs, embed]`."""
    try:
        args = body[0] if isinstance(body, list | tuple) else None  # type: ignore[index]
        return int(args[0]) if args else None  # type: ignore[index]
    except (TypeError, ValueError, IndexError, KeyError):
        return None


# Redis and the SQL broker: how far from the head a claim looks for its job's message, in two
# steps (8 first: most messages are near the head; every message read is about 1 KB).
WINDOWS = (8, MAX_SKIP - 8)


def envelope_job_id(raw: bytes | str) -> int | None:
    """Job id of a message as kombu stores it on Redis and in SQL (a JSON envelope whose body is
    the base64 of the Celery message)."""
    try:
        envelope = json.loads(raw)
        return message_job_id(json.loads(base64.b64decode(envelope["body"])))
    except (ValueError, TypeError, KeyError):
        return None


def remove_in_place(
    peek: Callable[[int, int], Sequence[tuple[object, bytes | str]]],
    drop: Callable[[object], None],
    job_id: int,
    is_queued: Callable[[int], bool],
) -> None:
    """Take `job_id`'s message out of a queue that can be read without taking (peek(skip, n) gives
    (handle, raw) pairs from the head) and cut anywhere (drop(handle)); stale messages met on the
    way go too, live ones stay where they are."""
    kept = 0  # live messages of other jobs at the head, left in place
    for size in WINDOWS:
        window = peek(kept, size)
        for handle, raw in window:
            jid = envelope_job_id(raw)
            if jid == job_id:
                drop(handle)
                return
            if jid is None or not is_queued(jid):
                drop(handle)  # stale: its job was deleted or handed out already
            else:
                kept += 1
        if len(window) < size:
            return  # the whole queue was looked at


class BrokerDown(Exception):
    """The broker failed recently; mirror work is skipped until the back-off ends."""


class KombuMirror:
    """Mirror operations with a circuit breaker: after a broker failure, publishes and removals are
    skipped (fast) for `backoff_seconds`, so a broker outage never slows submits or polls; the
    reconciliation beat task re-publishes what was skipped."""

    def __init__(self, app: Celery, *, backoff_seconds: float = 5.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.backoff_seconds = backoff_seconds
        self._monotonic = monotonic
        self._down_until = 0.0
        self._declared: set[str] = set()
        self._lock = threading.Lock()

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

    def remove(self, job_id: int, application: str, version: str, is_queued: Callable[[int], bool]) -> None:
        self._call(lambda: self._remove(job_id, application, version, is_queued))

    def _remove(self, job_id: int, application: str, version: str, is_queued: Callable[[int], bool]) -> None:
        with self.app.pool.acquire(block=True, timeout=5) as conn:
            q = self._bound(conn, application, version)
            if conn.transport.driver_type == "redis":
                self._remove_redis(conn.default_channel, q.name, job_id, is_queued)
                return
            if conn.transport.driver_type == "sql":
                self._remove_sql(conn.default_channel, q.name, job_id, is_queued)
                return
            # RabbitMQ: get from the head; a requeued message keeps its place there.
            for _ in range(MAX_SKIP):
                msg = q.get(no_ack=False, accept=["json"])
                if msg is None:
                    return
                jid = message_job_id(msg.payload)
                if jid == job_id:
                    msg.ack()
                    return
                if jid is None or not is_queued(jid):
                    msg.ack()  # stale: its job was deleted or handed out already
                    continue
                # The head is another QUEUED job this factory could not take (doctype/format): leave it.
                msg.requeue()
                return

    def trim(self, application: str, version: str, is_queued: Callable[[int], bool], limit: int) -> int:
        return self._call(lambda: self._trim(application, version, is_queued, limit))

    def _trim(self, application: str, version: str, is_queued: Callable[[int], bool], limit: int) -> int:
        dropped = 0
        with self.app.pool.acquire(block=True, timeout=5) as conn:
            q = self._bound(conn, application, version)
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
    def _remove_redis(channel, queue: str, job_id: int, is_queued: Callable[[int], bool]) -> None:  # type: ignore[no-untyped-def]
        """Redis: LRANGE near the head, LREM by value. (kombu requeues at the tail on Redis, so the
        get-and-requeue walk would send other jobs' messages to the back and leave this one behind.)
        The head is the right end: kombu publishes with LPUSH and consumes with RPOP."""
        client, key = channel.client, channel._q_for_pri(queue, 0)

        def peek(skip: int, n: int) -> list[tuple[object, bytes]]:
            return [(raw, raw) for raw in reversed(client.lrange(key, -(skip + n), -1 - skip))]

        remove_in_place(peek, lambda raw: client.lrem(key, -1, raw), job_id, is_queued)

    @staticmethod
    def _remove_sql(channel, queue: str, job_id: int, is_queued: Callable[[int], bool]) -> None:  # type: ignore[no-untyped-def]
        """kombu's SQL broker (the embedded default): read the visible rows from the head, delete by
        id. (A requeue there inserts a new row at the tail.)"""
        from sqlalchemy import text

        model, session = channel.message_cls, channel.session
        queue_id = channel._get_or_create(queue).id
        if session.bind.name == "sqlite":
            session.execute(text("BEGIN IMMEDIATE TRANSACTION"))  # as kombu's own get: no lock upgrade
        try:

            def peek(skip: int, n: int) -> list[tuple[object, str]]:
                q = session.query(model.id, model.payload).filter(model.queue_id == queue_id, model.visible.is_(True))
                return [(i, raw) for i, raw in q.order_by(model.sent_at, model.id).offset(skip).limit(n)]

            def drop(row_id: object) -> None:
                session.query(model).filter(model.id == row_id).delete(synchronize_session=False)

            remove_in_place(peek, drop, job_id, is_queued)
            session.commit()
        except BaseException:
            session.rollback()
            raise

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
        def count() -> int:
            with self.app.pool.acquire(block=True, timeout=5) as conn:
                q = pair_queue(application, version).bind(conn.default_channel)
                return int(q.queue_declare().message_count)

        return self._call(count)

    def declare(self, pairs: list[tuple[str, str]]) -> None:
        with self.app.pool.acquire(block=True, timeout=5) as conn:
            for a, v in pairs:
                self._bound(conn, a, v)

    def rebuild(self, application: str, version: str, job_ids: list[int]) -> None:
        with self.app.pool.acquire(block=True, timeout=5) as conn:
            self._bound(conn, application, version).purge()
        for jid in job_ids:
            self.publish(jid, application, version)
        log.info("mirror: rebuilt %s|%s with %d messages", application, version, len(job_ids))

    def ping(self) -> None:
        """Health check: always asks the broker (not the breaker), and resets the breaker on success."""
        with self.app.pool.acquire(block=True, timeout=3) as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        self._down_until = 0.0
