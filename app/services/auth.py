"""Authentication of client applications and factories, with a short verified-credential cache.

The KDF (scrypt) costs tens of milliseconds by design; a factory polling every few seconds must not
pay it per request. A successful verification is cached for `ttl` seconds under a SHA-256 of the
presented secret, so disabling or removing takes effect within `ttl`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from app.db.models import ClientApplication, Factory
from app.domain.credentials import dummy_hash, verify_secret
from app.domain.errors import AuthenticationFailed, FactoryDisabled
from app.domain.matching import WorkerSpec


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


class Authenticator:
    def __init__(self, ttl_seconds: int = 60, max_entries: int = 10000) -> None:
        self.ttl = timedelta(seconds=ttl_seconds)
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

    def _verify(
        self, kind: str, name: str, secret: str, now: datetime, load: Callable[[], tuple[object, str] | None]
    ) -> object:
        """`load` returns (identity, stored hash) or None for an unknown name."""
        key = (kind, name, hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest())
        hit = self._cached(key, now)
        if hit is not None:
            return hit
        # A name PostgreSQL cannot take as a parameter (a NUL) names no one: not looked up.
        found = load() if "\x00" not in name else None
        # Unknown names verify against a dummy hash: same cost, same answer as a wrong secret.
        ok = verify_secret(secret, found[1] if found else dummy_hash())
        if not ok or found is None:
            raise AuthenticationFailed("authentication failed")
        self._remember(key, found[0], now)
        return found[0]

    def client(self, session: Session, name: str, secret: str, now: datetime) -> ClientIdentity:
        def load() -> tuple[ClientIdentity, str] | None:
            row = session.scalar(select(ClientApplication).where(ClientApplication.name == name))
            if row is None or row.disabled:
                return None
            return ClientIdentity(row.id, row.name), row.secret_hash

        ident = self._verify("client", name, secret, now, load)
        assert isinstance(ident, ClientIdentity)
        return ident

    def factory(self, session: Session, name: str, secret: str | None, now: datetime) -> FactoryIdentity:
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
            ident = self._verify("factory", name, secret, now, load)
        assert isinstance(ident, FactoryIdentity)
        if ident.disabled:
            raise FactoryDisabled(f"factory {name!r} is disabled")
        return ident
