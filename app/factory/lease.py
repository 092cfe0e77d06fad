"""The lease-client port: what the job handler needs from a server to keep, finish or give back a job.

Two adapters implement it: ``XmlRpcLeaseClient`` (``app/factory/xmlrpc_lease.py``, the pull factory,
over the wire) and ``ServicesLeaseClient`` (``tasks/factory_worker.py``, the push factory, calling the
server's services in-process). Adapters translate their own errors into the exceptions below and do
their own retrying of transient trouble, since what is transient depends on the transport.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from app.domain.states import JobState

from .errors import FactoryError


@dataclass(frozen=True)
class Extension:
    """The answer to one ``jobs.extend``: the new lease expiry (epoch seconds; None when the server
    did not say) and whether the server wants the work stopped."""

    lease_expires: float | None
    cancelled: bool = False


class LeaseClientError(FactoryError):
    """Base of the port's errors; ``str(exc)`` is one line fit for a log."""


class LeaseLost(LeaseClientError):
    """The lease is not ours any more (expired and reclaimed, or the job is gone): drop the work."""


class ResultTooLarge(LeaseClientError):
    """The server refused the result for its size: the job is failed back."""


class ResultRefused(LeaseClientError):
    """The server refused the result for another reason (``str(exc)`` says which): the job is failed back."""


class ServerUnavailable(LeaseClientError):
    """The server could not be reached or answered with a transient error (after the adapter's retries)."""


class LeaseClient(Protocol):
    """A factory's side of one leased job. ``lease`` is the token ``jobs.poll``/claim handed out
    (None when the server sends none); ``job`` is the job's GUID.

    Every method may raise LeaseLost or ServerUnavailable; ``finish`` also ResultTooLarge and
    ResultRefused.
    """

    def extend(self, job: str, lease: str | None) -> Extension:
        """Renew the lease (the first call also moves the job to PROCESSING)."""
        ...

    def finish(self, job: str, lease: str | None, fmt: str, data: bytes, *, until: float | None) -> str:
        """Store the result; returns the result GUID. ``until`` (epoch seconds) bounds the retries."""
        ...

    def fail(self, job: str, lease: str | None, *, reason: str, permanent: bool = False) -> JobState | None:
        """Give the attempt back with a one-line reason; returns the job's state afterwards (QUEUED
        again, or FAILED with no attempt left), None when the server's answer does not say.
        ``permanent``: the document itself cannot be converted; the job fails at once."""
        ...
