"""Authentication of client applications and factories, with a short verified-credential cache.

The KDF (scrypt) costs tens of milliseconds by design; a factory polling every few seconds must not
pay it per request. A successful verification is cached for `ttl` seconds under a SHA-256 of the
presented secret, so disabling or removing takes effect within `ttl`.

Repeated failures are throttled (app.domain.throttle) when the adapter says where the request comes
from (`caller`): a throttled caller is refused before the cache or the hash is consulted.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.db.models import ClientApplication, Factory
from app.domain.credentials import dummy_hash, verify_secret
from app.domain.errors import AuthenticationFailed, FactoryDisabled, Throttled
from app.domain.matching import WorkerSpec
from app.domain.throttle import Caller, FailureThrottle


@dataclass(frozen=True)
class ClientIdentity:
    id: int
    name: str


@dataclass(frozen=True)
class FactoryIdentity:
    id: int
    name: str
    workers: tuple[WorkerSpec, ...]
    disabled: bool


def factory_workers(factory: Factory) -> tuple[WorkerSpec, ...]:
    return tuple(
        WorkerSpec(
            w.application,
            w.version,
            frozenset(x for x in w.doctypes.split(",") if x),
            frozenset(x for x in w.formats.split(",") if x),
        )
        for w in factory.workers
    )


def _digest(secret: str) -> str:
    """The cache key's form of a secret (the secret itself is never kept)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


class Authenticator:
    def __init__(self, ttl_seconds: int = 60, max_entries: int = 10000, throttle: FailureThrottle | None = None) -> None:
        self.ttl = timedelta(seconds=ttl_seconds)
        self.throttle = throttle or FailureThrottle()
        self.max_entries = max_entries
        self._cache: dict[tuple[str, str, str], tuple[object, datetime]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def _cached(self, key: tuple[str, str, str], now: datetime) -> object | None:
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[1] > now:
                return hit[0]
            if hit:
                del self._cache[key]
        return None

    def _remember(self, key: tuple[str, str, str], value: object, now: datetime) -> None:
        if self.ttl.total_seconds() <= 0:
            return
        with self._lock:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[key] = (value, now + self.ttl)

    def check_throttle(self, kind: str, name: str, caller: Caller | None, now: datetime) -> None:
        """Raise Throttled while `caller` has failed too often (for `name`, or for any name)."""
        if caller is None or caller.counted:
            return  # a request counted as a failure, checked again, gets the same answer: failed
        wait = self.throttle.retry_after(kind, name, caller.address, now.timestamp())
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise Throttled(
                f"too many failed authentications from this address; retry in {seconds} s", retryAfterSeconds=seconds
            )

    def record(self, kind: str, name: str, caller: Caller | None, now: datetime, ok: bool) -> None:
        """Count a failure (once per request) or forgive the failures of this (name, address)."""
        if caller is None:
            return
        if ok:
            self.throttle.succeeded(kind, name, caller.address)
        elif not caller.counted:
            caller.counted = True
            self.throttle.failed(kind, name, caller.address, now.timestamp())

    def _verify(
        self,
        kind: str,
        name: str,
        secret: str,
        now: datetime,
        load: Callable[[], tuple[object, str] | None],
        caller: Caller | None,
    ) -> object:
        """`load` returns (identity, stored hash) or None for an unknown name."""
        self.check_throttle(kind, name, caller, now)
        key = (kind, name, _digest(secret))
        hit = self._cached(key, now)
        if hit is not None:
            self.record(kind, name, caller, now, ok=True)
            return hit
        # A name PostgreSQL cannot take as a parameter (a NUL) names no one: not looked up.
        found = load() if "\x00" not in name else None
        # Unknown names verify against a dummy hash: same cost, same answer as a wrong secret.
        ok = verify_secret(secret, found[1] if found else dummy_hash())
        if not ok or found is None:
            self.record(kind, name, caller, now, ok=False)
            raise AuthenticationFailed("authentication failed")
        self.record(kind, name, caller, now, ok=True)
        self._remember(key, found[0], now)
        return found[0]

    def client(
        self, session: Session, name: str, secret: str, now: datetime, caller: Caller | None = None
    ) -> ClientIdentity:
        def load() -> tuple[ClientIdentity, str] | None:
            row = session.scalar(select(ClientApplication).where(ClientApplication.name == name))
            if row is None or row.disabled:
                return None
            return ClientIdentity(row.id, row.name), row.secret_hash

        ident = self._verify("client", name, secret, now, load, caller)
        assert isinstance(ident, ClientIdentity)
        return ident

    def cached_factory(self, name: str, secret: str, now: datetime, caller: Caller | None = None) -> FactoryIdentity | None:
        """The factory, when these credentials were verified within the cache's lifetime: no session,
        no database. None otherwise (then `factory` verifies them). Throttling, the failure count
        and a disabled factory are answered as `factory` answers them."""
        self.check_throttle("factory", name, caller, now)
        hit = self._cached(("factory", name, _digest(secret)), now)
        if hit is None:
            return None
        self.record("factory", name, caller, now, ok=True)
        assert isinstance(hit, FactoryIdentity)
        if hit.disabled:
            raise FactoryDisabled(f"factory {name!r} is disabled")
        return hit

    def factory(
        self, session: Session, name: str, secret: str | None, now: datetime, caller: Caller | None = None
    ) -> FactoryIdentity:
        """Verify a factory; secret None means a trusted proxy already authenticated it (client cert)."""

        def load() -> tuple[FactoryIdentity, str] | None:
            row = session.scalar(
                select(Factory).where(Factory.name == name).options(selectinload(Factory.workers))
            )
            if row is None:
                return None
            return FactoryIdentity(row.id, row.name, factory_workers(row), row.disabled), row.secret_hash

        if secret is None:
            key = ("factory-cert", name, "")
            ident = self._cached(key, now)
            if ident is None:
                found = load() if "\x00" not in name else None
                if found is None:
                    raise AuthenticationFailed("unknown factory")
                ident = found[0]
                self._remember(key, ident, now)
        else:
            ident = self._verify("factory", name, secret, now, load, caller)
        assert isinstance(ident, FactoryIdentity)
        if ident.disabled:
            raise FactoryDisabled(f"factory {name!r} is disabled")
        return ident
