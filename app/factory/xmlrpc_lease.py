"""The XML-RPC adapter of the lease-client port (the pull factory): ``jobs.extend``, ``jobs.finish``
and ``jobs.fail`` over a ServerProxy, with the contract's faults mapped to the port's errors."""

from __future__ import annotations

import logging
import time
import xmlrpc.client
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from app.domain.states import JobState

from .backoff import Backoff
from .lease import Extension, LeaseLost, ResultRefused, ResultTooLarge, ServerUnavailable
from .xmlrpc_client import (
    LEASE_LOST,
    NOT_FOUND,
    THROTTLED,
    TOO_LARGE,
    UNAVAILABLE,
    fault_line,
    parse_lease_expires,
)

log = logging.getLogger("convhub.factory")
T = TypeVar("T")

MAX_REASON = 500  # the wire's limit for a failure reason


class XmlRpcLeaseClient:
    """LeaseClient over one XML-RPC proxy (ServerProxy is not thread-safe: one client per thread).

    ``finish`` and ``fail`` retry 503 and 429 faults and network errors with backoff (``initial_backoff``
    doubling to ``max_backoff``, at most ``retries`` times, and for ``finish`` never past the
    lease's expiry); ``sleep`` waits between retries.
    """

    def __init__(
        self,
        proxy: Any,
        name: str,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = time.sleep,
        initial_backoff: float = 1.0,
        max_backoff: float = 30.0,
        retries: int = 5,
    ):
        self.proxy = proxy
        self.name = name
        self.clock = clock
        self.sleep = sleep
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.retries = retries

    def _args(self, *args: Any, lease: str | None) -> list[Any]:
        return [self.name, *args] + ([lease] if lease else [])

    def extend(self, job: str, lease: str | None) -> Extension:
        try:
            reply = self.proxy.jobs.extend(*self._args(job, lease=lease))
        except xmlrpc.client.Fault as exc:
            if exc.faultCode in (LEASE_LOST, NOT_FOUND):
                raise LeaseLost(fault_line(exc)) from None
            raise ServerUnavailable(fault_line(exc)) from None
        except Exception as exc:  # network trouble: the lease is still ours until it expires
            raise ServerUnavailable(fault_line(exc)) from None
        if not isinstance(reply, Mapping):
            return Extension(None, False)
        return Extension(parse_lease_expires(reply.get("leaseExpires")), bool(reply.get("cancelled")))

    def finish(self, job: str, lease: str | None, fmt: str, data: bytes, *, until: float | None) -> str:
        args = self._args(job, fmt, xmlrpc.client.Binary(data), lease=lease)
        try:
            result = self._with_retries("finish", job, lambda: self.proxy.jobs.finish(*args), until)
        except xmlrpc.client.Fault as exc:
            if exc.faultCode in (LEASE_LOST, NOT_FOUND):
                raise LeaseLost(fault_line(exc)) from None
            if exc.faultCode == TOO_LARGE:
                raise ResultTooLarge(fault_line(exc)) from None
            raise ResultRefused(fault_line(exc)) from None
        except Exception as exc:
            raise ServerUnavailable(fault_line(exc)) from None
        return str(result)

    def fail(self, job: str, lease: str | None, *, reason: str, permanent: bool = False) -> JobState | None:
        args = self._args(job, reason[:MAX_REASON], lease=lease)
        if permanent and lease:  # the flag follows the optional lease (no <nil/> on this proxy)
            args.append(True)
        try:
            reply = self._with_retries("fail", job, lambda: self.proxy.jobs.fail(*args), None)
        except xmlrpc.client.Fault as exc:
            if exc.faultCode in (LEASE_LOST, NOT_FOUND):
                raise LeaseLost(fault_line(exc)) from None
            raise ServerUnavailable(fault_line(exc)) from None
        except Exception as exc:
            raise ServerUnavailable(fault_line(exc)) from None
        return job_state(reply.get("jobStatus") if isinstance(reply, Mapping) else reply)

    def _with_retries(self, what: str, job: str, call: Callable[[], T], until: float | None) -> T:
        """Retry 503, 429 and network errors with backoff while the lease lasts; other faults propagate."""
        backoff = Backoff(self.initial_backoff, self.max_backoff)
        for attempt in range(self.retries + 1):
            error: Exception
            try:
                return call()
            except xmlrpc.client.Fault as exc:
                if exc.faultCode not in (UNAVAILABLE, THROTTLED):
                    raise
                error = exc
            except (OSError, xmlrpc.client.ProtocolError) as exc:
                error = exc
            delay = backoff.next()
            if attempt == self.retries or (until is not None and self.clock() + delay >= until):
                raise error
            log.warning("job %s: %s failed (%s); retrying in %g s", job, what, fault_line(error), delay)
            self.sleep(delay)
        raise AssertionError("unreachable")


def job_state(value: Any) -> JobState | None:
    """The wire's integer jobStatus as the domain's JobState; None when it is not one."""
    try:
        return JobState(int(value))
    except (TypeError, ValueError):
        return None
