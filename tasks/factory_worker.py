"""Push-style factory: a Celery worker that consumes the per-(application, version) queues.

``convhub factory celery`` runs this. It needs the server stack (``pip install 'convhub[server]'``):
it talks to the server's broker (``CONVHUB_BROKER_URL``) and database (``CONVHUB_DATABASE_URL``)
directly, not over XML-RPC.

Every message on a pair queue is the Celery task ``convhub.convert(job_id)`` published by the
mirror. The task here claims *that* job with the same conditional UPDATE pull factories use
(``jobs.claim(..., job_id=...)``), so a job is held by at most one factory, push or pull:

* claim returns None (the job was deleted, taken by a pull factory's ``jobs.poll``, finished, or
  this is a duplicate message): the message is dropped (the task returns and the message is acked);
  nothing is converted, so a job is never executed twice;
* else the document is read from the database, converted with the same converter objects as
  ``convhub factory run`` (``app.factory.build_converter``), the lease is kept alive with
  ``jobs.extend`` from a heartbeat thread (at most a third of the lease apart; the first extend
  moves the job to PROCESSING at once), and the job ends with ``jobs.finish`` (the format actually
  produced) or ``jobs.fail`` (one attempt used; back to QUEUED or FAILED, as for pull factories).

The database stays the authority: a factory that dies mid-job loses its lease, the reclaim beat
task requeues the job and re-publishes its message, and the dead factory's late finish is refused.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from celery import Celery
from celery.exceptions import Reject
from kombu import Queue

from app.config import Settings
from app.db.blobs import read_blob
from app.domain.errors import BadArgument, LeaseNotHeld, NotFound, TooLarge, Unavailable
from app.domain.matching import WorkerSpec as DomainWorker
from app.factory.converters import Converter
from app.factory.converters import WorkerSpec as FactoryWorker
from app.factory.errors import ConversionCancelled, ConversionError
from app.factory.runner import heartbeat_interval
from app.runtime import Runtime, build_runtime
from app.services import jobs
from tasks.celery_app import CONVERT_TASK, DEFAULT_QUEUE, make_celery, pair_queue

log = logging.getLogger("convhub.factory.celery")
T = TypeVar("T")

MAX_REASON = 2000
# Transient database trouble (Unavailable, a dropped connection) while finishing or failing:
# retried with these delays while the lease lasts; after that the lease expires and the job is requeued.
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)
# kombu's SQLAlchemy transport polls its table; its default (1 s) adds up to a second of idle
# between jobs on the embedded broker. One indexed SELECT per queue every quarter second instead.
# (It cannot go in broker_transport_options: that transport hands them all to create_engine.)
SQLA_POLLING_INTERVAL = 0.25


def fast_sqla_polling() -> None:
    """Process-wide: only for the dedicated ``convhub factory celery`` process."""
    from kombu.transport import sqlalchemy as sqla_transport

    sqla_transport.Transport.polling_interval = SQLA_POLLING_INTERVAL


def domain_workers(workers: Sequence[FactoryWorker]) -> tuple[DomainWorker, ...]:
    """The converter's workers as the services' WorkerSpec (frozensets)."""
    return tuple(DomainWorker(w.application, w.version, frozenset(w.doctypes), frozenset(w.formats)) for w in workers)


def queues_for(workers: Sequence[FactoryWorker]) -> list[Queue]:
    """One ``pair_queue`` per distinct (application, version), in the converter's order."""
    seen: dict[str, Queue] = {}
    for w in workers:
        q = pair_queue(w.application, w.version)
        seen.setdefault(q.name, q)
    return list(seen.values())


def default_owner() -> str:
    return f"celery@{socket.gethostname()}"


def _one_line(text: str) -> str:
    return (" ".join(str(text).split()) or "conversion failed")[:MAX_REASON]


class _Heartbeat:
    """Renews one job's lease until stopped; sets ``lost`` (and ``cancel``) when it is gone."""

    def __init__(self, factory: PushFactory, guid: str, token: str, expires: datetime, cancel: threading.Event) -> None:
        self.factory = factory
        self.guid = guid
        self.token = token
        self.expires = expires
        self.cancel = cancel
        self.done = threading.Event()
        self.lost = threading.Event()
        self.reason = ""
        self.extends = 0
        self._thread = threading.Thread(target=self._run, name=f"lease-{guid}", daemon=True)

    def beat(self) -> bool:
        """One ``jobs.extend``; False when the lease is lost (or the per-attempt cap is reached)."""
        rt = self.factory.rt
        try:
            with rt.db.session() as s:
                ext = jobs.extend(s, rt.now(), rt.policy, guid=self.guid, owner=self.factory.owner, token=self.token)
        except (LeaseNotHeld, NotFound) as exc:
            self._lose(f"lease lost ({exc.__class__.__name__})")
            return False
        except Exception as exc:  # noqa: BLE001 - transient: the lease is still ours until it expires
            log.warning("job %s: extend failed (%s); retrying", self.guid, exc.__class__.__name__)
            return True
        self.extends += 1
        self.expires = ext.lease_expires
        if ext.cancelled:
            self._lose("lease cap reached (the job is cancelled by the server)")
            return False
        return True

    def interval(self) -> float:
        """The pull factory's rule: a third of what is left of the lease, at most a third of a lease."""
        rt = self.factory.rt
        return heartbeat_interval(
            self.expires.timestamp(), rt.now().timestamp(), float(rt.policy.lease_seconds), self.factory.min_interval
        )

    def _lose(self, reason: str) -> None:
        self.reason = reason
        self.lost.set()
        self.cancel.set()
        log.warning("job %s: %s; abandoning it", self.guid, reason)

    def _run(self) -> None:
        while not self.done.wait(self.interval()):
            if not self.beat():
                return

    def start(self) -> _Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.done.set()
        if self._thread.is_alive():
            self._thread.join()


class PushFactory:
    """The body of the ``convhub.convert`` task for one converter; thread-safe (threads pool).

    ``counts`` tallies outcomes: dropped, finished, failed, abandoned, requeued (database away).
    """

    def __init__(
        self,
        rt: Runtime,
        converter: Converter,
        *,
        owner: str | None = None,
        timeout: float = 120.0,
        min_interval: float = 0.5,
        db_backoff: float = 2.0,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self.rt = rt
        self.converter = converter
        self.owner = owner or default_owner()
        self.timeout = timeout
        self.min_interval = min_interval
        self.db_backoff = db_backoff
        self.workers = domain_workers(converter.workers())
        if not self.workers:
            raise ValueError("the converter serves no workers")
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._sleep = sleep

    def queues(self) -> list[Queue]:
        return queues_for(self.converter.workers())

    def _count(self, outcome: str) -> str:
        with self._lock:
            self.counts[outcome] += 1
        return outcome

    # -- one message ---------------------------------------------------------------------------

    def handle(self, job_id: int) -> str:
        """Claim, convert and report the job of one message; returns the outcome."""
        rt = self.rt
        try:
            with rt.db.session() as s:
                claimed = jobs.claim(s, rt.now(), rt.policy, owner=self.owner, workers=self.workers, job_id=job_id)
        except Unavailable:
            # Not the job's fault: keep its message (requeued, not acked) and slow down while the
            # database is away, instead of dropping the message and waiting for reconciliation.
            log.warning("job %s: database unavailable; message requeued", job_id)
            self._count("requeued")
            self._sleep(self.db_backoff)
            raise Reject("database unavailable", requeue=True) from None
        if claimed is None:
            log.info("job %s: not QUEUED for this factory any more; message dropped", job_id)
            return self._count("dropped")
        log.info(
            "job %s (%s): %s %s %s -> %s (attempt %s)",
            claimed.id, claimed.guid, claimed.application, claimed.version, claimed.doctype,
            claimed.format or "default", claimed.attempt,
        )
        cancel = threading.Event()
        heartbeat = _Heartbeat(self, claimed.guid, claimed.lease_token, claimed.lease_expires, cancel)
        # The first extend at once: the job moves to PROCESSING before the conversion starts.
        if not heartbeat.beat():
            return self._count("abandoned")
        heartbeat.start()
        try:
            try:
                with rt.db.read_session() as s:
                    document = read_blob(s, claimed.blob_id)
                fmt, data = self.converter.convert(self._struct(claimed, document), self.timeout, cancel)
            except ConversionCancelled:
                heartbeat.stop()
                if heartbeat.lost.is_set():
                    return self._count("abandoned")
                return self._fail(claimed, "factory shutting down")
            except ConversionError as exc:
                heartbeat.stop()
                if heartbeat.lost.is_set():
                    return self._count("abandoned")
                log.warning("job %s failed: %s", claimed.id, exc.reason)
                return self._fail(claimed, exc.reason)
            except Exception as exc:
                heartbeat.stop()
                log.exception("job %s: converter error", claimed.id)
                if heartbeat.lost.is_set():
                    return self._count("abandoned")
                return self._fail(claimed, f"factory error: {type(exc).__name__}: {exc}")
        finally:
            heartbeat.stop()
        if heartbeat.lost.is_set():
            return self._count("abandoned")
        return self._finish(claimed, fmt, data)

    @staticmethod
    def _struct(c: jobs.Claimed, document: bytes) -> dict[str, object]:
        """The same struct ``jobs.poll`` sends, with the document as bytes."""
        return {
            "job": c.guid,
            "application": c.application,
            "version": c.version,
            "doctype": c.doctype,
            "format": c.format,
            "pageStart": c.page_start,
            "pageEnd": c.page_end,
            "filename": c.filename,
            "document": document,
            "lease": c.lease_token,
            "attempt": c.attempt,
        }

    def _retrying(self, what: str, c: jobs.Claimed, call: Callable[[], T]) -> T:
        """Retry transient errors; lease, argument and size errors propagate at once."""
        for delay in (*RETRY_DELAYS, None):
            try:
                return call()
            except (LeaseNotHeld, NotFound, BadArgument, TooLarge):
                raise
            except Exception as exc:
                if delay is None:
                    raise
                log.warning("job %s: %s failed (%s); retrying in %g s", c.id, what, exc.__class__.__name__, delay)
                self._sleep(delay)
        raise AssertionError("unreachable")

    def _finish(self, c: jobs.Claimed, fmt: str, data: bytes) -> str:
        rt = self.rt

        def call() -> str:
            with rt.db.session() as s:
                return jobs.finish(
                    s, rt.now(), rt.notifier, guid=c.guid, owner=self.owner, token=c.lease_token,
                    fmt=fmt, parts=data, max_bytes=rt.settings.max_document_bytes,
                )

        try:
            result = self._retrying("finish", c, call)
        except (LeaseNotHeld, NotFound) as exc:
            log.warning("job %s: result refused (%s); dropping it", c.id, exc.__class__.__name__)
            return self._count("abandoned")
        except TooLarge:
            return self._fail(c, f"result too large for the server ({len(data)} bytes)")
        except BadArgument as exc:
            return self._fail(c, f"server refused the result: {exc}")
        except Exception as exc:  # noqa: BLE001 - the lease expires and the job is requeued
            log.error("job %s: could not store the result (%s)", c.id, exc.__class__.__name__)
            return self._count("abandoned")
        log.info("job %s finished: %s, %d bytes, result %s", c.id, fmt, len(data), result)
        return self._count("finished")

    def _fail(self, c: jobs.Claimed, reason: str) -> str:
        rt = self.rt
        reason = _one_line(reason)

        def call() -> object:
            with rt.db.session() as s:
                return jobs.fail(
                    s, rt.now(), rt.policy, rt.notifier, rt.mirror, guid=c.guid, owner=self.owner,
                    token=c.lease_token, reason=reason,
                )

        try:
            state = self._retrying("fail", c, call)
        except Exception as exc:  # noqa: BLE001 - the lease expires and counts the attempt anyway
            log.warning("job %s: could not report the failure (%s)", c.id, exc.__class__.__name__)
            return self._count("abandoned")
        log.info("job %s reported failed (%s); job state now %s", c.id, reason, getattr(state, "name", state))
        return self._count("failed")


def register(app: Celery, factory: PushFactory) -> Any:
    """Register ``convhub.convert`` on ``app`` (not shared: other apps in the process are untouched)."""

    @app.task(name=CONVERT_TASK, shared=False, acks_late=True, ignore_result=True)
    def convert(job_id: int) -> str:
        return factory.handle(int(job_id))

    return convert


def configure(app: Celery, factory: PushFactory) -> list[str]:
    """Declare the pair queues on ``app`` (beside the default queue the notifier publishes to) and
    register the task; returns the names of the queues the worker must consume."""
    queues = factory.queues()
    default = [q for q in app.conf.task_queues or [] if q.name == DEFAULT_QUEUE]
    app.conf.task_queues = [*default, *queues]
    register(app, factory)
    return [q.name for q in queues]


def make_factory_app(
    settings: Settings, converter: Converter, *, owner: str | None = None, timeout: float = 120.0
) -> tuple[Celery, PushFactory, list[str]]:
    """The Celery app of a push-style factory, its PushFactory and the queue names to consume."""
    app = make_celery(settings)
    rt = build_runtime(settings, celery=app)
    factory = PushFactory(rt, converter, owner=owner, timeout=timeout)
    names = configure(app, factory)
    return app, factory, names


def warn_if_unregistered(rt: Runtime, name: str | None, workers: Sequence[DomainWorker]) -> None:
    """Submissions are accepted only for pairs a registered, enabled factory serves: say so."""
    from app.services import admin

    try:
        with rt.db.read_session() as s:
            served = {w.pair for w in admin.served_targets(s)}
    except Exception as exc:  # noqa: BLE001 - only a hint
        log.warning("could not read the registered factories (%s)", exc.__class__.__name__)
        return
    missing = sorted({w.pair for w in workers} - served)
    if missing:
        pairs = ", ".join(f"{a} {v}" for a, v in missing)
        log.warning(
            "no enabled registered factory serves %s: clients cannot submit for it until one is added "
            "(convhub factories add %s --worker ...)", pairs, name or "NAME",
        )


def run(
    settings: Settings,
    converter: Converter,
    *,
    name: str | None = None,
    concurrency: int = 1,
    timeout: float = 120.0,
    loglevel: str = "INFO",
) -> int:
    """``convhub factory celery``: a threads-pool Celery worker on the converter's pair queues.

    One process, ``concurrency`` threads sharing the converter (a LibreOffice pool of the same
    size). SIGTERM is Celery's warm shutdown: running conversions finish, then the process exits.
    """
    owner = name or default_owner()
    if settings.broker_kind == "sqla":
        fast_sqla_polling()
    app, factory, names = make_factory_app(settings, converter, owner=owner, timeout=timeout)
    hostname = owner if "@" in owner else f"{owner}@{socket.gethostname()}"
    warn_if_unregistered(factory.rt, name, factory.workers)
    log.info("push factory %s consuming %s", owner, ", ".join(names))
    converter.start()
    try:
        worker = app.Worker(
            hostname=hostname,
            queues=names,
            concurrency=concurrency,
            pool="threads",
            loglevel=loglevel,
            without_mingle=True,
            without_gossip=True,
        )
        worker.start()
        return int(getattr(worker, "exitcode", 0) or 0)
    finally:
        converter.close()
        factory.rt.close()
