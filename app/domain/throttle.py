"""Throttling of repeated failed authentications: a token bucket per (kind, name, address) and one
per address, kept in the memory of one process (each web process throttles on its own).

A failure spends one token of both buckets; a bucket refills at `limit` tokens per `window_seconds`.
While either bucket of a request is empty, the request is refused before its credentials are
checked, whether they are right or not: answering a right secret differently would tell a guesser
when the guess was right. The rightful owner calling from another address has other buckets and is
not affected. A correct credential empties nothing and forgives the failures of its own
(kind, name, address); it never resets the address's bucket.

The tables are capped (`max_entries` each); when one is full, the bucket touched longest ago is
dropped (it is the one most likely to have refilled anyway). Time is a parameter (`now`, seconds).
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class ThrottlePolicy:
    per_name: int = 10  # failures per window per (kind, name, address); 0 turns the bucket off
    per_address: int = 50  # failures per window per address, any names; 0 turns the bucket off
    window_seconds: float = 60.0
    max_entries: int = 10_000  # per table

    @property
    def enabled(self) -> bool:
        return self.window_seconds > 0 and (self.per_name > 0 or self.per_address > 0)


class _Buckets:
    """Spent tokens per key, leaking at `limit / window` per second; insertion order = last touched."""

    def __init__(self, limit: int, window: float, max_entries: int) -> None:
        self.limit = limit
        self.rate = limit / window if window > 0 else 0.0
        self.max_entries = max(1, max_entries)
        self.spent: dict[object, tuple[float, float]] = {}  # key -> (spent tokens, at)

    def _level(self, key: object, now: float) -> float:
        hit = self.spent.get(key)
        if hit is None:
            return 0.0
        spent, at = hit
        return max(0.0, spent - max(0.0, now - at) * self.rate)

    def wait(self, key: object, now: float) -> float:
        """Seconds until one more failure fits (0: it fits now)."""
        if self.limit <= 0:
            return 0.0
        over = self._level(key, now) - (self.limit - 1)
        return over / self.rate if over > 0 else 0.0

    def spend(self, key: object, now: float) -> None:
        if self.limit <= 0:
            return
        level = self._level(key, now) + 1.0
        self.spent.pop(key, None)
        while len(self.spent) >= self.max_entries:
            del self.spent[next(iter(self.spent))]  # the least recently touched
        self.spent[key] = (level, now)

    def forget(self, key: object) -> None:
        self.spent.pop(key, None)


def _name_key(kind: str, name: str, address: str) -> tuple[str, str, str]:
    """A name of any length takes a few dozen bytes of table (a 1 MB name is a hash)."""
    if len(name) > 64:
        name = "sha256:" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    return kind, name, address


class FailureThrottle:
    """Thread-safe; one per process. `address` None (no network caller, e.g. the CLI) is never throttled."""

    def __init__(self, policy: ThrottlePolicy | None = None) -> None:
        self.policy = policy or ThrottlePolicy()
        p = self.policy
        self._names = _Buckets(p.per_name, p.window_seconds, p.max_entries)
        self._addresses = _Buckets(p.per_address, p.window_seconds, p.max_entries)
        self._lock = threading.Lock()

    def retry_after(self, kind: str, name: str, address: str | None, now: float) -> float:
        """Seconds the caller must wait before its credentials are checked again; 0 = check them now."""
        if address is None or not self.policy.enabled:
            return 0.0
        with self._lock:
            if not self._names.spent and not self._addresses.spent:
                return 0.0  # nothing failed lately: the common case costs no lookups
            return max(self._names.wait(_name_key(kind, name, address), now), self._addresses.wait(address, now))

    def failed(self, kind: str, name: str, address: str | None, now: float) -> None:
        if address is None or not self.policy.enabled:
            return
        with self._lock:
            self._names.spend(_name_key(kind, name, address), now)
            self._addresses.spend(address, now)

    def succeeded(self, kind: str, name: str, address: str | None) -> None:
        if address is None or not self.policy.enabled:
            return
        with self._lock:
            if self._names.spent:
                self._names.forget(_name_key(kind, name, address))

    def sizes(self) -> tuple[int, int]:
        """(name buckets, address buckets) held now: bounded by `max_entries` each."""
        with self._lock:
            return len(self._names.spent), len(self._addresses.spent)


@dataclass
class Caller:
    """Where one request comes from. A request counts at most one failure, even when an adapter
    checks its credentials twice (a fast path that hands the request on to the general one)."""

    address: str | None
    counted: bool = False
