"""Interfaces the services call out through; implemented in tasks/ (Celery/kombu)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Protocol

# The database's answer to "which of these jobs are still QUEUED and claimable?" (a mirror removal
# drops the messages of the others).
QueuedAmong = Callable[[Sequence[int]], Collection[int]]


class Mirror(Protocol):
    """The Celery mirror of QUEUED jobs: one queue per (application, version)."""

    def publish(self, job_id: int, application: str, version: str) -> None: ...

    def publish_many(self, jobs: list[tuple[int, str, str]]) -> None:
        """`publish` for each (job id, application, version), in order, as one batch."""
        ...

    def remove(self, job_id: int, application: str, version: str, queued_among: QueuedAmong) -> None:
        """Take this job's message off its pair's queue: no broker round trip in the claim (the
        removal is owed to a drain thread that takes messages off in batches), never a walk of the
        queue. A message it cannot reach goes stale; reconciliation's `trim` drops those."""
        ...

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until the removals asked for so far (owed to the drain thread) are done; whether they are."""
        ...

    def trim(self, application: str, version: str, is_queued: Callable[[int], bool], limit: int) -> int:
        """Drop stale messages at the head of the pair's queue (up to `limit`, stopping at the first
        message of a QUEUED job); return how many were dropped."""
        ...

    def queue_length(self, application: str, version: str) -> int | None: ...

    def sweep_consumed(self) -> int:
        """Delete what the broker keeps of messages already taken (kombu's SQL broker); the count."""
        ...

    def rebuild(self, application: str, version: str, job_ids: list[int]) -> int:
        """Purge the pair's queue and publish these jobs in order; the queue's length read back
        afterwards (what is verified, not what was sent)."""
        ...

    def ping(self) -> None: ...


class Notifier(Protocol):
    """Schedules delivery of a callback row (by id) after commit."""

    def send_callback(self, callback_id: int) -> None: ...


class NullMirror:
    """No broker: the database alone (used by tests of the store, and by tools)."""

    def publish(self, job_id: int, application: str, version: str) -> None:
        return None

    def publish_many(self, jobs: list[tuple[int, str, str]]) -> None:
        for job_id, application, version in jobs:
            self.publish(job_id, application, version)

    def remove(self, job_id: int, application: str, version: str, queued_among: QueuedAmong) -> None:
        return None

    def settle(self, timeout: float = 10.0) -> bool:
        return True

    def trim(self, application: str, version: str, is_queued: Callable[[int], bool], limit: int) -> int:
        return 0

    def queue_length(self, application: str, version: str) -> int | None:
        return None

    def sweep_consumed(self) -> int:
        return 0

    def rebuild(self, application: str, version: str, job_ids: list[int]) -> int:
        return 0

    def ping(self) -> None:
        return None


class NullNotifier:
    def send_callback(self, callback_id: int) -> None:
        return None
