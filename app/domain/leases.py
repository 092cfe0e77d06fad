"""Lease rules: grant, extend (capped), expiry and attempts."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from .states import JobState


@dataclass(frozen=True)
class LeasePolicy:
    lease_seconds: int = 300
    max_total_seconds: int = 3600
    max_attempts: int = 3

    def new_token(self) -> str:
        """A fresh random token for every grant (128 bits)."""
        return secrets.token_hex(16)

    def grant_expiry(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.lease_seconds)

    def extended_expiry(self, leased_at: datetime, now: datetime) -> datetime:
        """Renew by one lease length, never past leased_at + max_total_seconds."""
        cap = leased_at + timedelta(seconds=self.max_total_seconds)
        return min(now + timedelta(seconds=self.lease_seconds), cap)



def after_lost_attempt(attempts_used: int, max_attempts: int) -> JobState:
    """State after an attempt ends without a result (expiry or fail); each job keeps its own budget."""
    return JobState.FAILED if attempts_used >= max_attempts else JobState.QUEUED


def lease_is_live(token: str | None, expires: datetime | None, presented: str | None, now: datetime) -> bool:
    """The presented token holds the lease and it has not expired.

    ``presented`` None means the caller did not send a token (the seed's jobs.finish has no lease
    argument); the service then relies on factory identity alone.
    """
    if token is None or expires is None or now >= expires:
        return False
    if presented is None:
        return True
    # Bytes, not str: compare_digest refuses non-ASCII str, and `presented` comes off the wire.
    return secrets.compare_digest(token.encode(), presented.encode("utf-8", "surrogatepass"))
