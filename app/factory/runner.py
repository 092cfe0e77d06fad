"""The pull-style factory: poll the server over XML-RPC, convert, upload, keep the lease alive.

Every clock and sleep is injectable (``clock`` returns epoch seconds, ``sleep(seconds)`` waits), so
the loop can be driven by tests without real time passing.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import signal
import threading
import time
import xmlrpc.client
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .converters import Converter
from .errors import ConversionCancelled, ConversionError, FatalServerError

log = logging.getLogger("convhub.factory")

# Fault codes of the wire contract (SPEC.md, "XML-RPC").
BAD_ARGUMENT, AUTH_FAILED, DISABLED, NOT_FOUND, LEASE_LOST, TOO_LARGE, UNAVAILABLE = (
    400,
    401,
    403,
    404,
    409,
    413,
    503,
)
MAX_REASON = 500


# -- transport ---------------------------------------------------------------------------------


class _AuthMixin:
    """Adds HTTP Basic and a socket timeout; keeps the secret out of the URL (and so out of logs)."""

    _auth_header: str
    _timeout: float

    def get_host_info(self, host):  # type: ignore[no-untyped-def]
        host, extra, x509 = super().get_host_info(host)  # type: ignore[misc]
        return host, list(extra or []) + [("Authorization", self._auth_header)], x509

    def make_connection(self, host):  # type: ignore[no-untyped-def]
        conn = super().make_connection(host)  # type: ignore[misc]
        conn.timeout = self._timeout
        return conn


class _Transport(_AuthMixin, xmlrpc.client.Transport):
    pass


class _SafeTransport(_AuthMixin, xmlrpc.client.SafeTransport):
    pass


def xmlrpc_url(server_url: str) -> str:
    """The server's base URL (or its /xmlrpc URL) -> the /xmlrpc endpoint, without userinfo."""
    parts = urlsplit(server_url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"server URL must be http(s)://host[:port][/path], got {server_url!r}")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    path = parts.path.rstrip("/")
    if not path.endswith("/xmlrpc"):
        path += "/xmlrpc"
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def make_proxy(server_url: str, name: str, secret: str, timeout: float = 60.0) -> xmlrpc.client.ServerProxy:
    """A ServerProxy for ``server_url + /xmlrpc`` authenticating as factory ``name``."""
    url = xmlrpc_url(server_url)
    cls = _SafeTransport if url.startswith("https:") else _Transport
    transport = cls()
    token = base64.b64encode(f"{name}:{secret}".encode()).decode("ascii")
    transport._auth_header = f"Basic {token}"
    transport._timeout = timeout
    return xmlrpc.client.ServerProxy(url, transport=transport)


# -- timing helpers ----------------------------------------------------------------------------


class Backoff:
    """Idle/error delay: ``initial`` seconds doubling up to ``maximum``; reset after work."""

    def __init__(self, initial: float = 1.0, maximum: float = 30.0):
        self.initial = initial
        self.maximum = maximum
        self._current = initial

    def next(self) -> float:
        delay = self._current
        self._current = min(self._current * 2, self.maximum)
        return delay

    def reset(self) -> None:
        self._current = self.initial

    def hold_max(self) -> None:
        self._current = self.maximum


def parse_lease_expires(value: Any) -> float | None:
    """leaseExpires (xmlrpc DateTime, datetime or ISO 8601 text, UTC when naive) -> epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, xmlrpc.client.DateTime):
        value = value.value
    if isinstance(value, dt.datetime):
        stamp = value
    else:
        text = str(value).strip()
        stamp = None
        for fmt in ("%Y%m%dT%H:%M:%S", "%Y%m%dT%H%M%S"):
            try:
                stamp = dt.datetime.strptime(text[:17] if fmt == "%Y%m%dT%H:%M:%S" else text, fmt)
                break
            except ValueError:
                pass
        if stamp is None:
            try:
                stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.timestamp()


def heartbeat_interval(
    lease_expires: float | None, now: float, lease_seconds: float = 300.0, minimum: float = 0.5
) -> float:
    """Seconds until the next jobs.extend: a third of what is left of the lease (or of a full lease
    when the expiry is unknown), never more than a third of the lease length."""
    remaining = lease_seconds if lease_expires is None else lease_expires - now
    return max(minimum, min(remaining, lease_seconds) / 3.0)


def _fault_line(exc: BaseException) -> str:
    if isinstance(exc, xmlrpc.client.Fault):
        text = " ".join(str(exc.faultString).split())
        return f"fault {exc.faultCode}: {text}"
    if isinstance(exc, xmlrpc.client.ProtocolError):
        return f"HTTP {exc.errcode} {exc.errmsg}"
    return " ".join(str(exc).split()) or type(exc).__name__


def _one_line(reason: str) -> str:
    return (" ".join(reason.split()) or "conversion failed")[:MAX_REASON]


# -- heartbeat ---------------------------------------------------------------------------------


class Heartbeat:
    """Keeps one job's lease alive while it converts; sets ``lost`` on 409 or cancelled=true.

    The first extend goes out at once: it tells the server the work started (state 1 -> 2).
    """

    def __init__(
        self,
        proxy: Any,
        name: str,
        job: str,
        lease: str | None,
        lease_expires: float | None,
        *,
        lease_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
        wait: Callable[[float], Any] | None = None,
        on_lost: Callable[[str], None] | None = None,
    ):
        self.proxy = proxy
        self.name = name
        self.job = job
        self.lease = lease
        self.expires = lease_expires
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.done = threading.Event()
        self.lost = threading.Event()
        self.reason = ""
        self.extends = 0
        self._wait = wait or self.done.wait
        self._on_lost = on_lost
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job}", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.done.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _lose(self, reason: str) -> None:
        self.reason = reason
        self.lost.set()
        log.warning("job %s: %s; abandoning it", self.job, reason)
        if self._on_lost:
            self._on_lost(reason)

    def _run(self) -> None:
        delay = 0.0
        while not self.done.is_set():
            if delay:
                self._wait(delay)
                if self.done.is_set():
                    return
            args = [self.name, self.job] + ([self.lease] if self.lease else [])
            try:
                reply = self.proxy.jobs.extend(*args)
            except xmlrpc.client.Fault as exc:
                if exc.faultCode in (LEASE_LOST, NOT_FOUND):
                    self._lose(f"lease lost ({_fault_line(exc)})")
                    return
                log.warning("job %s: extend failed (%s); retrying", self.job, _fault_line(exc))
            except Exception as exc:  # network trouble: the lease is still ours until it expires
                log.warning("job %s: extend failed (%s); retrying", self.job, _fault_line(exc))
            else:
                self.extends += 1
                if isinstance(reply, Mapping):
                    if reply.get("cancelled"):
                        self._lose("job cancelled by the server")
                        return
                    self.expires = parse_lease_expires(reply.get("leaseExpires")) or self.expires
            delay = heartbeat_interval(self.expires, self.clock(), self.lease_seconds)


# -- the loop ----------------------------------------------------------------------------------


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
        lease_seconds: float = 300.0,
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
        self.timeout = timeout
        self.lease_seconds = lease_seconds
        self.once = once
        self.clock = clock
        self.stopping = threading.Event()
        self.hurry = threading.Event()  # second signal: abandon conversions in hand, fail them
        self._sleep = sleep or self.stopping.wait  # a stop request cuts an idle wait short
        # Uploads in hand are worth finishing during shutdown, so retry waits ignore `stopping`.
        self._retry_sleep = sleep or time.sleep
        self._heartbeat_wait = heartbeat_wait
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.finish_retries = finish_retries
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

    def poll_once(self, proxy: Any, backoff: Backoff) -> dict | None:
        """One jobs.poll; returns the job or None (nothing, or an error worth retrying later)."""
        self._count("polls")
        try:
            job = proxy.jobs.poll(self.name)
        except xmlrpc.client.Fault as exc:
            if exc.faultCode == AUTH_FAILED:
                raise FatalServerError(f"server refused factory {self.name!r}: {_fault_line(exc)}") from None
            if exc.faultCode == NOT_FOUND:
                raise FatalServerError(
                    f"server does not know factory {self.name!r}: {_fault_line(exc)}"
                ) from None
            if exc.faultCode == DISABLED:
                # The operator may enable it again: keep asking, slowly.
                log.warning("factory %s is disabled (%s); polling slowly", self.name, _fault_line(exc))
                backoff.hold_max()
            else:
                log.warning("poll failed: %s", _fault_line(exc))
            self._count("poll_errors")
            return None
        except xmlrpc.client.ProtocolError as exc:
            if exc.errcode == 401:
                raise FatalServerError(f"server refused factory {self.name!r}: {_fault_line(exc)}") from None
            log.warning("poll failed: %s", _fault_line(exc))
            self._count("poll_errors")
            return None
        except Exception as exc:  # connection refused, reset, bad XML: the server may come back
            log.warning("poll failed: %s", _fault_line(exc))
            self._count("poll_errors")
            return None
        if not isinstance(job, Mapping) or not job.get("job"):
            return None
        return dict(job)

    # -- one job -------------------------------------------------------------------------------

    def handle_job(self, proxy: Any, job: Mapping) -> str:
        """Convert one polled job and report it; returns finished, failed or abandoned."""
        job_id = str(job["job"])
        lease = job.get("lease") or None
        expires = parse_lease_expires(job.get("leaseExpires"))
        log.info(
            "job %s: %s %s %s -> %s (attempt %s)",
            job_id,
            job.get("application"),
            job.get("version"),
            job.get("doctype"),
            job.get("format") or "default",
            job.get("attempt", "?"),
        )
        cancel = threading.Event()
        with self._lock:
            self._active.add(cancel)
            if self.hurry.is_set():
                cancel.set()
        heartbeat = Heartbeat(
            self.proxy_factory(),
            self.name,
            job_id,
            lease,
            expires,
            lease_seconds=self.lease_seconds,
            clock=self.clock,
            wait=self._heartbeat_wait,
            on_lost=lambda _reason: cancel.set(),
        ).start()
        try:
            fmt, data = self.converter.convert(job, self.timeout, cancel)
        except ConversionCancelled:
            heartbeat.stop()
            if heartbeat.lost.is_set():
                return self._count("abandoned")
            return self._fail(proxy, job_id, "factory shutting down", lease)
        except ConversionError as exc:
            heartbeat.stop()
            if heartbeat.lost.is_set():
                return self._count("abandoned")
            log.warning("job %s failed: %s", job_id, exc.reason)
            return self._fail(proxy, job_id, exc.reason, lease)
        except Exception as exc:
            heartbeat.stop()
            log.exception("job %s: converter error", job_id)
            if heartbeat.lost.is_set():
                return self._count("abandoned")
            return self._fail(proxy, job_id, f"factory error: {type(exc).__name__}: {exc}", lease)
        finally:
            heartbeat.stop()
            with self._lock:
                self._active.discard(cancel)
        if heartbeat.lost.is_set():
            return self._count("abandoned")
        return self._finish(proxy, job_id, fmt, data, lease, heartbeat.expires)

    def _call_with_retries(self, what: str, job_id: str, call: Callable[[], Any], until: float | None) -> Any:
        """Retry 503 and network errors with backoff while the lease lasts; other faults propagate."""
        backoff = Backoff(self.initial_backoff, self.max_backoff)
        for attempt in range(self.finish_retries + 1):
            try:
                return call()
            except xmlrpc.client.Fault as exc:
                if exc.faultCode != UNAVAILABLE:
                    raise
                error = exc
            except (OSError, xmlrpc.client.ProtocolError) as exc:
                error = exc
            delay = backoff.next()
            if attempt == self.finish_retries or (until is not None and self.clock() + delay >= until):
                raise error
            log.warning("job %s: %s failed (%s); retrying in %g s", job_id, what, _fault_line(error), delay)
            self._retry_sleep(delay)
        raise AssertionError("unreachable")

    def _finish(
        self, proxy: Any, job_id: str, fmt: str, data: bytes, lease: str | None, until: float | None
    ) -> str:
        args = [self.name, job_id, fmt, xmlrpc.client.Binary(data)] + ([lease] if lease else [])
        try:
            result = self._call_with_retries("finish", job_id, lambda: proxy.jobs.finish(*args), until)
        except xmlrpc.client.Fault as exc:
            if exc.faultCode in (LEASE_LOST, NOT_FOUND):
                log.warning("job %s: result refused, %s; dropping it", job_id, _fault_line(exc))
                return self._count("abandoned")
            if exc.faultCode == TOO_LARGE:
                return self._fail(
                    proxy, job_id, f"result too large for the server ({len(data)} bytes)", lease
                )
            return self._fail(proxy, job_id, f"server refused the result: {_fault_line(exc)}", lease)
        except Exception as exc:
            log.error("job %s: could not upload the result: %s", job_id, _fault_line(exc))
            return self._count("abandoned")  # the lease expires and the server requeues the job
        log.info("job %s finished: %s, %d bytes, result %s", job_id, fmt, len(data), result)
        return self._count("finished")

    def _fail(self, proxy: Any, job_id: str, reason: str, lease: str | None) -> str:
        args = [self.name, job_id, _one_line(reason)] + ([lease] if lease else [])
        try:
            reply = self._call_with_retries("fail", job_id, lambda: proxy.jobs.fail(*args), None)
        except Exception as exc:
            log.warning("job %s: could not report the failure (%s)", job_id, _fault_line(exc))
            return self._count("abandoned")
        status = reply.get("jobStatus") if isinstance(reply, Mapping) else reply
        log.info("job %s reported failed (%s); job status now %s", job_id, _one_line(reason), status)
        return self._count("failed")
