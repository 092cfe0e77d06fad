"""One job handler for every kind of factory: convert a leased job and report it over a LeaseClient.

Abandon if the lease is lost, else fail: a conversion that ends (error, timeout, cancel, crash)
while the lease is still ours is given back with ``jobs.fail``; once the lease is lost nothing is
reported (the server has already requeued the job and would refuse it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .converters import Converter
from .errors import ConversionCancelled, ConversionError
from .heartbeat import DEFAULT_LEASE_SECONDS, MAX_INTERVAL, MIN_INTERVAL, Heartbeat, describe
from .lease import LeaseClient, LeaseLost, ResultRefused, ResultTooLarge

log = logging.getLogger("convhub.factory")

# Outcomes of one job, as returned by JobHandler.handle (and counted by the factories).
FINISHED, FAILED, ABANDONED = "finished", "failed", "abandoned"
SHUTTING_DOWN = "factory shutting down"


def one_line(reason: str) -> str:
    """A reason as one line (``jobs.fail`` takes one); adapters cut it to their wire's length."""
    return " ".join(str(reason).split()) or "conversion failed"


@dataclass(frozen=True)
class LeasedJob:
    """A job this factory holds the lease of.

    ``struct`` is the ``jobs.poll`` struct the converters read; when ``load_document`` is given the
    document is read through it once the work has started (a failure to read it fails the job).
    """

    job: str  # the GUID
    lease: str | None
    lease_expires: float | None  # epoch seconds
    struct: Mapping[str, Any]
    load_document: Callable[[], bytes] | None = None
    label: str = ""  # how logs name the job (default: the GUID)

    @property
    def name(self) -> str:
        return self.label or self.job


@dataclass
class JobHandler:
    """Converts leased jobs with ``converter``; thread-safe when the converter is.

    ``timeout`` is the per-conversion limit handed to the converter; ``lease_seconds``,
    ``min_interval``, ``clock`` and ``heartbeat_wait`` drive the heartbeat (see heartbeat.py).
    """

    converter: Converter
    timeout: float | None = None
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    min_interval: float = MIN_INTERVAL
    max_interval: float = MAX_INTERVAL
    clock: Callable[[], float] = field(default=time.time)
    heartbeat_wait: Callable[[float], Any] | None = None

    def handle(
        self,
        client: LeaseClient,
        job: LeasedJob,
        *,
        heartbeat_client: LeaseClient | None = None,
        cancel: threading.Event | None = None,
    ) -> str:
        """Convert one job and report it through ``client``; returns FINISHED, FAILED or ABANDONED.

        The heartbeat talks through ``heartbeat_client`` (default ``client``): an adapter that is not
        thread-safe gives it a second instance. ``cancel`` set from another thread (shutdown in a
        hurry) stops the conversion; the job is then failed back.
        """
        s = job.struct
        log.info(
            "job %s: %s %s %s -> %s (attempt %s)",
            job.name, s.get("application"), s.get("version"), s.get("doctype"),
            s.get("format") or "default", s.get("attempt", "?"),
        )
        cancel = cancel if cancel is not None else threading.Event()
        heartbeat = Heartbeat(
            heartbeat_client or client,
            job.job,
            job.lease,
            job.lease_expires,
            label=job.name,
            cancel=cancel,
            lease_seconds=self.lease_seconds,
            min_interval=self.min_interval,
            max_interval=self.max_interval,
            clock=self.clock,
            wait=self.heartbeat_wait,
        )
        # The first extend before the conversion starts: the job is PROCESSING while it converts.
        if not heartbeat.beat():
            return ABANDONED
        heartbeat.start()
        try:
            struct = job.struct
            if job.load_document is not None:
                struct = {**struct, "document": job.load_document()}
            fmt, data = self.converter.convert(struct, self.timeout, cancel)
        except ConversionCancelled:
            heartbeat.stop()
            if heartbeat.lost.is_set():
                return ABANDONED
            return self._fail(client, job, SHUTTING_DOWN)
        except ConversionError as exc:
            heartbeat.stop()
            if heartbeat.lost.is_set():
                return ABANDONED
            log.warning("job %s failed%s: %s", job.name, " permanently" if exc.permanent else "", exc.reason)
            return self._fail(client, job, exc.reason, permanent=exc.permanent)
        except Exception as exc:
            heartbeat.stop()
            log.exception("job %s: converter error", job.name)
            if heartbeat.lost.is_set():
                return ABANDONED
            return self._fail(client, job, f"factory error: {type(exc).__name__}: {exc}")
        finally:
            heartbeat.stop()
        if heartbeat.lost.is_set():
            return ABANDONED
        return self._finish(client, job, fmt, data, heartbeat.expires)

    def _finish(self, client: LeaseClient, job: LeasedJob, fmt: str, data: bytes, until: float | None) -> str:
        try:
            result = client.finish(job.job, job.lease, fmt, data, until=until)
        except LeaseLost as exc:
            log.warning("job %s: result refused, %s; dropping it", job.name, describe(exc))
            return ABANDONED
        except ResultTooLarge:
            return self._fail(client, job, f"result too large for the server ({len(data)} bytes)")
        except ResultRefused as exc:
            return self._fail(client, job, f"server refused the result: {exc}")
        except Exception as exc:  # the lease expires and the server requeues the job
            log.error("job %s: could not upload the result: %s", job.name, describe(exc))
            return ABANDONED
        log.info("job %s finished: %s, %d bytes, result %s", job.name, fmt, len(data), result)
        return FINISHED

    def _fail(self, client: LeaseClient, job: LeasedJob, reason: str, *, permanent: bool = False) -> str:
        reason = one_line(reason)
        try:
            status = client.fail(job.job, job.lease, reason=reason, permanent=permanent)
        except Exception as exc:  # the lease expires and counts the attempt anyway
            log.warning("job %s: could not report the failure (%s)", job.name, describe(exc))
            return ABANDONED
        log.info(
            "job %s reported failed (%s); job state now %s", job.name, reason, status.name if status else "unknown"
        )
        return FAILED
