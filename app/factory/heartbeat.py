"""One heartbeat for every kind of factory: keeps a job's lease alive while it converts.

The interval rule lives here and only here (``heartbeat_interval``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .errors import FactoryError
from .lease import LeaseClient, LeaseLost

log = logging.getLogger("convhub.factory")

DEFAULT_LEASE_SECONDS = 300.0
MIN_INTERVAL = 0.5
# The longest wait between two extends: a job the client cancels is stopped within this long
# (the server answers the next jobs.extend with cancelled = true).
MAX_INTERVAL = 30.0


def heartbeat_interval(
    lease_expires: float | None,
    now: float,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    minimum: float = MIN_INTERVAL,
    maximum: float = MAX_INTERVAL,
) -> float:
    """Seconds until the next jobs.extend: a third of what is left of the lease (or of a full lease
    when the expiry is unknown), never more than a third of the lease length nor than ``maximum``."""
    remaining = lease_seconds if lease_expires is None else lease_expires - now
    return max(minimum, min(remaining / 3.0, lease_seconds / 3.0, maximum))


def describe(exc: BaseException) -> str:
    """The port's errors say what happened in one line; anything else only by its class (an
    unexpected exception's text may hold a query or a path)."""
    if isinstance(exc, FactoryError):
        return str(exc) or type(exc).__name__
    return type(exc).__name__


class Heartbeat:
    """Keeps one job's lease alive; sets ``lost`` (and ``cancel``) when the lease is gone or the
    server answers ``cancelled``.

    ``beat()`` sends one extend; ``start()`` runs the following ones on a thread, each
    ``heartbeat_interval`` after the previous one. ``clock`` returns epoch seconds; ``wait(seconds)``
    (default: wait on the stop event) is injectable so tests need no real time.
    """

    def __init__(
        self,
        client: LeaseClient,
        job: str,
        lease: str | None,
        lease_expires: float | None,
        *,
        label: str | None = None,
        cancel: threading.Event | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        min_interval: float = MIN_INTERVAL,
        max_interval: float = MAX_INTERVAL,
        clock: Callable[[], float] = time.time,
        wait: Callable[[float], Any] | None = None,
    ):
        self.client = client
        self.job = job
        self.label = label or job
        self.lease = lease
        self.expires = lease_expires
        self.cancel = cancel
        self.lease_seconds = lease_seconds
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.cancelled = threading.Event()  # the server answered cancelled = true
        self.clock = clock
        self.done = threading.Event()
        self.lost = threading.Event()
        self.reason = ""
        self.extends = 0
        self._wait = wait or self.done.wait
        self._beat_first = True
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job}", daemon=True)

    def interval(self) -> float:
        return heartbeat_interval(self.expires, self.clock(), self.lease_seconds, self.min_interval, self.max_interval)

    def beat(self) -> bool:
        """One jobs.extend; False once the lease is lost (or the server cancelled the job)."""
        try:
            reply = self.client.extend(self.job, self.lease)
        except LeaseLost as exc:
            self._lose(f"lease lost ({describe(exc)})")
            return False
        except Exception as exc:  # transient: the lease is still ours until it expires
            log.warning("job %s: extend failed (%s); retrying", self.label, describe(exc))
            return True
        self.extends += 1
        if reply.cancelled:
            # The client cancelled the job (it has ended) or the lease reached its cap: stop the
            # conversion (the LibreOffice converter kills and restarts its instance) and report nothing.
            self.cancelled.set()
            self._lose("job cancelled by the server")
            return False
        self.expires = reply.lease_expires or self.expires
        return True

    def start(self, *, beat_first: bool = False) -> Heartbeat:
        """Run the heartbeat thread; with ``beat_first`` its first extend goes out at once."""
        self._beat_first = beat_first
        self._thread.start()
        return self

    def stop(self) -> None:
        self.done.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _lose(self, reason: str) -> None:
        self.reason = reason
        self.lost.set()
        if self.cancel is not None:
            self.cancel.set()
        log.warning("job %s: %s; abandoning it", self.label, reason)

    def _run(self) -> None:
        delay = 0.0 if self._beat_first else self.interval()
        while not self.done.is_set():
            if delay:
                self._wait(delay)
                if self.done.is_set():
                    return
            if not self.beat():
                return
            delay = self.interval()
