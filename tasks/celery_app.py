"""Celery app factory, queue routing and beat schedule. Nothing connects at import time."""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
from datetime import timedelta

from celery import Celery
from celery.schedules import crontab
from kombu import Exchange, Queue

from app.config import Settings
from app.domain.matching import queue_name
from tasks import jobs

DEFAULT_QUEUE = "convhub"
log = logging.getLogger("convhub.broker")
CONVERT_TASK = "convhub.convert"


def pair_queue(application: str, version: str) -> Queue:
    """The queue of one (application, version): direct exchange and routing key named like the queue."""
    name = queue_name(application, version)
    return Queue(name, Exchange(name, type="direct"), routing_key=name, durable=True)


def prepare_embedded_broker(settings: Settings) -> None:
    """Put the embedded broker's SQLite file in WAL mode (a setting kept in the file, so once is
    enough; the file is created if new). In the default rollback-journal mode every commit (each
    claim's removal, each publish, each get) costs several fsyncs under one writer lock: 42 ms per
    claim removal at 100k messages on a 2-core machine, 8 ms with WAL. Best effort: a file another
    process holds mid-transaction keeps its mode until the next start."""
    path = _embedded_broker_path(settings)
    if not path:
        return
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as c:
            c.execute("PRAGMA journal_mode=WAL")
    except sqlite3.Error as exc:
        log.warning("embedded broker: could not switch %s to WAL mode: %s", path, exc)


def _embedded_broker_path(settings: Settings) -> str:
    """The embedded broker's SQLite file ("" for another broker or an in-memory one)."""
    prefix = "sqla+sqlite:///"
    path = settings.broker_url.removeprefix(prefix) if settings.broker_url.startswith(prefix) else ""
    return "" if path == ":memory:" else path


def embedded_broker_connection(path: str) -> sqlite3.Connection:
    """A connection to the embedded broker's file, as kombu's engine would open it, with
    synchronous=NORMAL: in WAL mode a commit then writes the log without an fsync (the log is
    synced at checkpoints), so a claim's removal no longer waits on the disk under SQLite's one
    writer lock. A power loss may drop the last commits: a publish lost that way is re-published by
    reconciliation, a removal lost leaves a stale message that trimming drops."""
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def make_celery(settings: Settings) -> Celery:
    app = Celery("convhub", set_as_current=False)
    # A publish or queue operation tries the broker once more at most before failing: the web
    # request must not hang on a dead broker (the mirror's breaker then skips it for a while).
    transport_options: dict[str, object] = {}
    if settings.broker_kind in ("amqp", "redis"):
        transport_options.update(max_retries=1, interval_start=0, interval_step=0.5, interval_max=1)
    if settings.broker_kind == "amqp":
        # Publisher confirms: a publish returns once RabbitMQ has the message, so a committed job's
        # message is not lost in a client buffer and queue lengths are exact right after.
        transport_options["confirm_publish"] = True
    elif settings.broker_kind == "redis":
        # Longer than the longest possible lease, so the broker never redelivers a message whose
        # job is still legitimately being processed.
        transport_options["visibility_timeout"] = settings.visibility_timeout_seconds
    elif settings.broker_kind == "sqla":
        # kombu's SQLAlchemy transport hands these to create_engine. It has no visibility timeout:
        # a message taken is invisible until acked and lost if its taker dies (reconciliation repairs).
        transport_options["connect_args"] = {"timeout": 30}
        if path := _embedded_broker_path(settings):  # its engine opens connections through this
            transport_options = {"creator": functools.partial(embedded_broker_connection, path)}
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options=transport_options,
        broker_connection_timeout=3,
        broker_connection_retry_on_startup=True,
        broker_pool_limit=20,
        task_default_queue=DEFAULT_QUEUE,
        task_queues=[Queue(DEFAULT_QUEUE, Exchange(DEFAULT_QUEUE, type="direct"), routing_key=DEFAULT_QUEUE)],
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        enable_utc=True,
        timezone="UTC",
        beat_schedule={
            "reclaim-expired-leases": {
                "task": "convhub.reclaim",
                "schedule": timedelta(seconds=settings.reclaim_interval_seconds),
            },
            "reconcile-mirror": {
                "task": "convhub.reconcile",
                "schedule": timedelta(seconds=settings.reconcile_interval_seconds),
            },
            "purge-deleted": {"task": "convhub.purge_deleted", "schedule": timedelta(seconds=30)},
            "retention": {"task": "convhub.retention", "schedule": timedelta(hours=1)},
            # Job counts (migration 0008): a client's read sums its deltas since the last fold.
            "fold-job-counts": {"task": "convhub.fold_counts", "schedule": timedelta(seconds=10)},
            "callbacks-due": {"task": "convhub.callbacks_due", "schedule": timedelta(seconds=30)},
            "trends-snapshot": {"task": "convhub.snapshot", "schedule": crontab()},  # every minute, on the minute
            "trends-prune": {"task": "convhub.snapshot_prune", "schedule": timedelta(hours=1)},
            # Rendering comparisons (tasks/comparison.py): start the due ones; retention.
            "comparisons-due": {"task": "convhub.comparisons_due", "schedule": timedelta(seconds=5)},
            "comparisons-retention": {"task": "convhub.comparisons_retention", "schedule": timedelta(hours=1)},
        },
    )
    app.conf.convhub_settings = settings
    jobs.register(app)
    import tasks.comparison  # registers convhub.comparisons_due, convhub.compare, convhub.comparisons_retention
    import tasks.trends  # noqa: F401 - registers convhub.snapshot and convhub.snapshot_prune (shared tasks)

    return app


class CeleryNotifier:
    """The Notifier port over Celery: a callback's delivery is a task on the default queue."""

    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def send_callback(self, callback_id: int) -> None:
        self.celery.send_task(jobs.SEND_CALLBACK, args=[callback_id], queue=DEFAULT_QUEUE, retry=False)
