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
* else the job goes to the factory core the pull factory uses (``app.factory.JobHandler``): the
  document is read from the database, converted with the same converter objects as
  ``convhub factory run`` (``app.factory.build_converter``), the lease is kept alive with
  ``jobs.extend`` by the shared heartbeat (at most a third of the lease apart; the first extend
  moves the job to PROCESSING before the conversion starts), and the job ends with ``jobs.finish``
  (the format actually produced) or ``jobs.fail`` (one attempt used; back to QUEUED or FAILED).

The server's services are reached through one adapter, ``ServicesLeaseClient`` (the lease-client
port of ``app/factory/lease.py``, plus claim and document reads).

The database stays the authority: a factory that dies mid-job loses its lease, the reclaim beat
task requeues the job and re-publishes its message, and the dead factory's late finish is refused.
"""

from __future__ import annotations

import argparse
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from celery import Celery
from celery.exceptions import Reject
from kombu import Queue

from app.config import Settings
from app.domain.errors import BadArgument, LeaseNotHeld, NotFound, TooLarge, Unavailable
from app.domain.matching import WorkerSpec
from app.domain.states import JobState
from app.factory.converters import Converter
from app.factory.errors import ConfigError
from app.factory.handler import JobHandler, LeasedJob
from app.factory.heartbeat import MIN_INTERVAL
from app.factory.lease import Extension, LeaseLost, ResultRefused, ResultTooLarge, ServerUnavailable
from app.runtime import Runtime, build_runtime
from app.services import claims, documents, leases
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


def domain_workers(workers: Iterable[WorkerSpec]) -> tuple[WorkerSpec, ...]:
    """The converter's workers as the services take them (doctypes and formats as frozensets)."""
    return tuple(WorkerSpec(w.application, w.version, frozenset(w.doctypes), frozenset(w.formats)) for w in workers)


def queues_for(workers: Sequence[WorkerSpec]) -> list[Queue]:
    """One ``pair_queue`` per distinct (application, version), in the converter's order."""
    seen: dict[str, Queue] = {}
    for w in workers:
        q = pair_queue(w.application, w.version)
        seen.setdefault(q.name, q)
    return list(seen.values())


def default_owner() -> str:
    return f"celery@{socket.gethostname()}"


class ServicesLeaseClient:
    """The factory core's lease-client port over the server's services, in-process; also the claim
    and the document read of the push factory. Every service call of the push factory is here, so a
    rename of the services touches this class only. Thread-safe: one session per call.

    ``finish`` and ``fail`` retry transient errors (RETRY_DELAYS); lease, argument and size errors
    are answered at once.
    """

    def __init__(self, rt: Runtime, owner: str, *, sleep: Callable[[float], Any] = time.sleep) -> None:
        self.rt = rt
        self.owner = owner
        self.sleep = sleep

    def claim(self, job_id: int, workers: Sequence[WorkerSpec]) -> claims.Claimed | None:
        """The job of one message, leased to this factory; None when it is not QUEUED for it any more.
        Raises Unavailable when the database is away."""
        rt = self.rt
        with rt.db.session() as s:
            return claims.claim(s, rt.now(), rt.policy, owner=self.owner, workers=workers, job_id=job_id)

    def document(self, blob_id: int) -> bytes:
        with self.rt.db.read_session() as s:
            return documents.read(s, blob_id)

    def extend(self, job: str, lease: str | None) -> Extension:
        rt = self.rt
        try:
            with rt.db.session() as s:
                ext = leases.extend(
                    s, rt.now(), rt.policy, guid=job, owner=self.owner, token=lease, notifier=rt.notifier, mirror=rt.mirror
                )
        except (LeaseNotHeld, NotFound) as exc:
            raise LeaseLost(exc.__class__.__name__) from None
        except Exception as exc:  # transient: the lease is still ours until it expires
            raise ServerUnavailable(exc.__class__.__name__) from None
        return Extension(ext.lease_expires.timestamp(), bool(ext.cancelled))

    def finish(self, job: str, lease: str | None, fmt: str, data: bytes, *, until: float | None) -> str:
        rt = self.rt

        def call() -> str:
            return leases.finish_job(
                rt.db, rt.now(), rt.notifier, guid=job, owner=self.owner, token=lease,
                fmt=fmt, document=lambda: data, max_bytes=rt.settings.max_document_bytes,
            ).result_guid

        try:
            return str(self._retrying("finish", job, call))
        except (LeaseNotHeld, NotFound) as exc:
            raise LeaseLost(exc.__class__.__name__) from None
        except TooLarge as exc:
            raise ResultTooLarge(exc.__class__.__name__) from None
        except BadArgument as exc:
            raise ResultRefused(str(exc)) from None
        except Exception as exc:  # the lease expires and the job is requeued
            raise ServerUnavailable(exc.__class__.__name__) from None

    def fail(self, job: str, lease: str | None, *, reason: str, permanent: bool = False) -> JobState:
        rt = self.rt

        def call() -> JobState:
            with rt.db.session() as s:
                return leases.fail(
                    s, rt.now(), rt.policy, rt.notifier, rt.mirror, guid=job, owner=self.owner,
                    token=lease, reason=reason[:MAX_REASON], permanent=permanent,
                )

        try:
            state = self._retrying("fail", job, call)
        except (LeaseNotHeld, NotFound) as exc:
            raise LeaseLost(exc.__class__.__name__) from None
        except Exception as exc:  # the lease expires and counts the attempt anyway
            raise ServerUnavailable(exc.__class__.__name__) from None
        return state

    def _retrying(self, what: str, job: str, call: Callable[[], T]) -> T:
        """Retry transient errors; lease, argument and size errors propagate at once."""
        for delay in (*RETRY_DELAYS, None):
            try:
                return call()
            except (LeaseNotHeld, NotFound, BadArgument, TooLarge):
                raise
            except Exception as exc:
                if delay is None:
                    raise
                log.warning("job %s: %s failed (%s); retrying in %g s", job, what, exc.__class__.__name__, delay)
                self.sleep(delay)
        raise AssertionError("unreachable")


def poll_struct(c: claims.Claimed) -> dict[str, object]:
    """The struct ``jobs.poll`` sends, without the document (read when the work starts)."""
    return {
        "job": c.guid,
        "application": c.application,
        "version": c.version,
        "doctype": c.doctype,
        "format": c.format,
        "pageStart": c.page_start,
        "pageEnd": c.page_end,
        "filename": c.filename,
        "lease": c.lease_token,
        "attempt": c.attempt,
    }


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
        min_interval: float = MIN_INTERVAL,
        db_backoff: float = 2.0,
        sleep: Callable[[float], Any] = time.sleep,
    ) -> None:
        self.rt = rt
        self.converter = converter
        self.owner = owner or default_owner()
        self.timeout = timeout
        self.db_backoff = db_backoff
        self.workers = domain_workers(converter.workers())
        if not self.workers:
            raise ValueError("the converter serves no workers")
        self.server = ServicesLeaseClient(rt, self.owner, sleep=sleep)
        self.handler = JobHandler(
            converter,
            timeout=timeout,
            lease_seconds=float(rt.policy.lease_seconds),
            min_interval=min_interval,
            clock=lambda: rt.now().timestamp(),
        )
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._sleep = sleep

    def queues(self) -> list[Queue]:
        return queues_for(self.converter.workers())

    def _count(self, outcome: str) -> str:
        with self._lock:
            self.counts[outcome] += 1
        return outcome

    def handle(self, job_id: int) -> str:
        """Claim, convert and report the job of one message; returns the outcome."""
        try:
            claimed = self.server.claim(job_id, self.workers)
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
        blob_id = claimed.blob_id
        leased = LeasedJob(
            job=claimed.guid,
            lease=claimed.lease_token,
            lease_expires=claimed.lease_expires.timestamp(),
            struct=poll_struct(claimed),
            load_document=lambda: self.server.document(blob_id),
            label=f"{claimed.id} ({claimed.guid})",
        )
        return self._count(self.handler.handle(self.server, leased))


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


def warn_if_unregistered(rt: Runtime, name: str | None, workers: Sequence[WorkerSpec]) -> None:
    """Submissions are accepted only for pairs a registered, enabled factory serves: say so."""
    from app.services import admin

    try:
        with rt.db.read_session() as s:
            served = {w.pair for w in admin.served_targets(s)}
    except Exception as exc:  # only a hint
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


def cli_main(args: argparse.Namespace) -> int:
    """``convhub factory celery`` (registered by app/cli.py): the factory's configuration (INI file,
    environment, flags, as for ``factory run``) plus the server's settings; returns the exit status."""
    from app.factory.cli import config_from_args, report_errors, setup_logging

    verbose = bool(getattr(args, "verbose", False))
    setup_logging(verbose)

    def command() -> int:
        from app.config import ConfigError as SettingsError
        from app.config import load_settings
        from app.factory.config import build_converter

        cfg = config_from_args(args)
        cfg.validate(need_server=False)
        converter = build_converter(cfg)
        try:
            settings = load_settings()
        except SettingsError as exc:
            raise ConfigError(str(exc)) from None
        return run(
            settings,
            converter,
            name=cfg.name or None,
            concurrency=cfg.concurrency,
            timeout=cfg.timeout,
            loglevel="DEBUG" if verbose else settings.log_level,
        )

    return report_errors(command)
