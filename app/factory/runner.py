"""The pull-style factory's poll loop: slots that poll the server over XML-RPC and hand each job to
the shared JobHandler (handler.py), which converts it and reports it through an XmlRpcLeaseClient.

Every clock and sleep is injectable (``clock`` returns epoch seconds, ``sleep(seconds)`` waits), so
the loop can be driven by tests without real time passing.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Mapping
from typing import Any

from .backoff import Backoff
from .converters import Converter
from .errors import FatalServerError
from .handler import JobHandler, LeasedJob
from .heartbeat import DEFAULT_LEASE_SECONDS, MAX_INTERVAL
from .xmlrpc_client import AUTH_FAILED, DISABLED, NOT_FOUND, fault_line, parse_lease_expires
from .xmlrpc_lease import XmlRpcLeaseClient

log = logging.getLogger("convhub.factory")


class FactoryRunner:
    """Runs ``concurrency`` slots; each polls, converts with ``converter``, finishes or fails.

    ``proxy_factory()`` returns a new XML-RPC proxy (ServerProxy is not thread-safe: every slot and
    heartbeat gets its own). ``run()`` returns the exit status: 0, or 1 after a fatal server refusal.
    """

    def __init__(
        self,
        proxy_factory: Callable[[], Any],
        name: str,
        converter: Converter,
        *,
        concurrency: int = 1,
        timeout: float | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        heartbeat_seconds: float = MAX_INTERVAL,
        once: bool = False,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] | None = None,
        heartbeat_wait: Callable[[float], Any] | None = None,
        initial_backoff: float = 1.0,
        max_backoff: float = 30.0,
        finish_retries: int = 5,
    ):
        self.proxy_factory = proxy_factory
        self.name = name
        self.converter = converter
        self.concurrency = concurrency
        self.once = once
        self.clock = clock
        self.stopping = threading.Event()
        self.hurry = threading.Event()  # second signal: abandon conversions in hand, fail them
        self._sleep = sleep or self.stopping.wait  # a stop request cuts an idle wait short
        # Uploads in hand are worth finishing during shutdown, so retry waits ignore `stopping`.
        self._retry_sleep = sleep or time.sleep
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.finish_retries = finish_retries
        self.handler = JobHandler(
            converter, timeout=timeout, lease_seconds=lease_seconds, max_interval=heartbeat_seconds, clock=clock,
            heartbeat_wait=heartbeat_wait,
        )
        self.fatal: str | None = None
        self.stats = {"finished": 0, "failed": 0, "abandoned": 0, "polls": 0, "poll_errors": 0}
        self._lock = threading.Lock()
        self._active: set[threading.Event] = set()

    # -- control -------------------------------------------------------------------------------

    def stop(self, hurry: bool = False) -> None:
        """Stop polling; with ``hurry`` also abandon conversions in hand (they are failed back)."""
        self.stopping.set()
        if hurry:
            self.hurry.set()
            with self._lock:
                for cancel in self._active:
                    cancel.set()

    def run(self, install_signals: bool = True) -> int:
        previous = {}
        if install_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            workers = ", ".join(f"{w.application} {w.version}" for w in self.converter.workers())
            log.info("factory %s polling with %d slot(s); workers: %s", self.name, self.concurrency, workers)
            threads = [
                threading.Thread(target=self._slot, args=(i,), name=f"slot-{i}", daemon=True)
                for i in range(self.concurrency)
            ]
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.5)  # a timed join lets the main thread take signals
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.fatal:
            log.error("%s", self.fatal)
            return 1
        if self.once and self.stats["poll_errors"]:
            return 1  # a one-shot run that could not reach the server must say so
        return 0

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.stopping.is_set():
            log.warning("second %s: failing the jobs in hand", signal.Signals(signum).name)
            self.stop(hurry=True)
        else:
            log.info("%s: finishing the jobs in hand, then exiting", signal.Signals(signum).name)
            self.stop()

    def _count(self, outcome: str) -> str:
        with self._lock:
            self.stats[outcome] = self.stats.get(outcome, 0) + 1
        return outcome

    # -- slot ----------------------------------------------------------------------------------

    def _slot(self, index: int) -> None:
        try:
            self.poll_loop()
        except FatalServerError as exc:
            self.fatal = str(exc)
            self.stop(hurry=True)
        except Exception:  # a bug must not leave the process half-alive
            log.exception("slot %d crashed", index)
            self.fatal = f"slot {index} crashed"
            self.stop(hurry=True)

    def poll_loop(self) -> None:
        """One slot: poll until stopped (or once). Raises FatalServerError on 401/404."""
        proxy = self.proxy_factory()
        backoff = Backoff(self.initial_backoff, self.max_backoff)
        while not self.stopping.is_set():
            job = self.poll_once(proxy, backoff)
            if job:
                backoff.reset()
                self.handle_job(proxy, job)
            if self.once:
                return
            if not job and not self.stopping.is_set():
                self._sleep(backoff.next())

    def poll_once(self, proxy: Any, backoff: Backoff) -> dict[str, Any] | None:
        """One jobs.poll; returns the job or None (nothing, or an error worth retrying later)."""
        self._count("polls")
        try:
            job = proxy.jobs.poll(self.name)
        except xmlrpc.client.Fault as exc:
            if exc.faultCode == AUTH_FAILED:
                raise FatalServerError(f"server refused factory {self.name!r}: {fault_line(exc)}") from None
            if exc.faultCode == NOT_FOUND:
                raise FatalServerError(
                    f"server does not know factory {self.name!r}: {fault_line(exc)}"
                ) from None
            if exc.faultCode == DISABLED:
                # The operator may enable it again: keep asking, slowly.
                log.warning("factory %s is disabled (%s); polling slowly", self.name, fault_line(exc))
                backoff.hold_max()
            else:
                log.warning("poll failed: %s", fault_line(exc))
            self._count("poll_errors")
            return None
        except xmlrpc.client.ProtocolError as exc:
            if exc.errcode == 401:
                raise FatalServerError(f"server refused factory {self.name!r}: {fault_line(exc)}") from None
            log.warning("poll failed: %s", fault_line(exc))
            self._count("poll_errors")
            return None
        except Exception as exc:  # connection refused, reset, bad XML: the server may come back
            log.warning("poll failed: %s", fault_line(exc))
            self._count("poll_errors")
            return None
        if not isinstance(job, Mapping) or not job.get("job"):
            return None
        return dict(job)

    # -- one job -------------------------------------------------------------------------------

    def lease_client(self, proxy: Any) -> XmlRpcLeaseClient:
        return XmlRpcLeaseClient(
            proxy,
            self.name,
            clock=self.clock,
            sleep=self._retry_sleep,
            initial_backoff=self.initial_backoff,
            max_backoff=self.max_backoff,
            retries=self.finish_retries,
        )

    def handle_job(self, proxy: Any, job: Mapping[str, Any]) -> str:
        """Convert one polled job and report it; returns finished, failed or abandoned."""
        leased = LeasedJob(
            job=str(job["job"]),
            lease=job.get("lease") or None,
            lease_expires=parse_lease_expires(job.get("leaseExpires")),
            struct=job,
        )
        cancel = threading.Event()
        with self._lock:
            self._active.add(cancel)
            if self.hurry.is_set():
                cancel.set()
        try:
            outcome = self.handler.handle(
                self.lease_client(proxy),
                leased,
                heartbeat_client=self.lease_client(self.proxy_factory()),
                cancel=cancel,
            )
        finally:
            with self._lock:
                self._active.discard(cancel)
        return self._count(outcome)
