"""The factory poll (XML-RPC jobs.poll): a read-only probe, then an atomic claim, then the mirror's
message taken off. The claim itself is `app.services.claims`; its SQL is `app.services.statements`.

An empty poll is one indexed read per (application, version) the factory serves: no write, no scan.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import update

from app.db.engine import Database
from app.db.hot import HotConnection
from app.db.models import Factory
from app.domain.leases import LeasePolicy
from app.services import claims, maintenance
from app.services.auth import FactoryIdentity
from app.services.claims import Claimed
from app.services.ports import Mirror, Notifier

log = logging.getLogger("convhub.poll")

# Factories' last-poll times are written at most once per this interval per process, so that
# thousands of idle factories do not turn empty polls into database writes.
TOUCH_INTERVAL = timedelta(seconds=60)
_touched: dict[int, datetime] = {}
_touched_lock = threading.Lock()


def touch_factory(db: Database, factory_id: int, now: datetime) -> None:
    with _touched_lock:
        last = _touched.get(factory_id)
        if last is not None and now - last < TOUCH_INTERVAL:
            return
        _touched[factory_id] = now
    db.run(lambda s: s.execute(update(Factory).where(Factory.id == factory_id).values(last_poll_at=now)))


class LazyReclaimer:
    """Reclaims expired leases from the poll path, at most once per `interval` per process.

    Beat's reclaim task is the main mechanism; this keeps leases flowing back while beat is down
    (docs/factory-protocol.md, "Leases"). Between runs it costs nothing; a run is one
    indexed read of the lease index, and a write only when a lease has actually expired.
    """

    def __init__(self, interval: timedelta) -> None:
        self.interval = interval
        self._next: datetime | None = None
        self._lock = threading.Lock()

    def due(self, now: datetime) -> bool:
        with self._lock:
            if self._next is not None and now < self._next:
                return False
            self._next = now + self.interval
            return True

    def __call__(self, db: Database, now: datetime, notifier: Notifier, mirror: Mirror) -> int:
        if not self.due(now):
            return 0
        if not db.run(lambda s: maintenance.has_expired_lease(s, now), read=True):
            return 0
        with db.session() as s:
            done = maintenance.reclaim_expired(s, now, notifier, mirror)
        for job_id, state in done:
            log.info("lease expired job=%s outcome=%s (reclaimed by poll)", job_id, state.name)
        return len(done)


def poll(
    db: Database,
    now: datetime,
    policy: LeasePolicy,
    mirror: Mirror,
    factory: FactoryIdentity,
    *,
    reclaim: tuple[LazyReclaimer, Notifier] | None = None,
) -> Claimed | None:
    touch_factory(db, factory.id, now)
    if reclaim is not None:
        reclaimer, notifier = reclaim
        try:
            reclaimer(db, now, notifier, mirror)
        except Exception as exc:  # beat reclaims too; a poll must not fail on this
            log.warning("lazy reclaim failed: %s", exc.__class__.__name__)
    if not factory.workers:
        return None
    claimed = claim_next(db, now, policy, factory)
    if claimed is not None:
        take_message(db, mirror, claimed.id, claimed.application, claimed.version)
    return claimed


def claim_next(db: Database, now: datetime, policy: LeasePolicy, factory: FactoryIdentity) -> Claimed | None:
    """The probe, then the claim. Round trips (touch and lazy reclaim aside, once a minute):
    PostgreSQL: empty 1 (the probe), with a job 2 (the probe; the one-statement claim, document
    included when it is one chunk), on one hot connection (`Database.hot`: autocommit, below
    SQLAlchemy's Core execution); a head whose client has an in-flight limit adds the claim in a
    transaction (BEGIN, pick, client lock, UPDATE, COMMIT).
    SQLite: empty 1 (the probe, alone in autocommit), with a job 5 (+ BEGIN IMMEDIATE, pick with
    the one-chunk document, UPDATE, COMMIT), two connections (the probe never takes the write lock)."""
    owner, workers = factory.name, factory.workers
    if not db.is_sqlite:

        def probe_and_claim(h: HotConnection) -> Claimed | claims.NeedsTransaction | None:
            heads = claims.probe(h, workers)
            if not heads:
                return None
            return claims.claim_at_once(h, now, policy, owner=owner, workers=workers, pairs=[p for _, p in heads])

        found = db.hot(probe_and_claim)
        if not isinstance(found, claims.NeedsTransaction):
            return found
        return db.run(lambda s: claims.claim(s, now, policy, owner=owner, workers=workers))
    heads = db.hot(lambda h: claims.probe(h, workers))
    if not heads:
        return None
    pairs = [p for _, p in heads]
    return db.run(lambda s: claims.claim(s, now, policy, owner=owner, workers=workers, pairs=pairs))


def take_message(db: Database, mirror: Mirror, job_id: int, application: str, version: str) -> None:
    """Remove the claimed job's message from its queue; a broker outage only delays this."""

    def queued_among(ids: Sequence[int]) -> set[int]:  # one round trip on PostgreSQL
        if db.is_sqlite:
            return db.run(lambda s: claims.queued_among(s, ids), read=True)
        return db.hot(lambda h: claims.queued_among(h, ids))

    try:
        mirror.remove(job_id, application, version, queued_among)
    except Exception as exc:  # the database is the authority; reconciliation repairs
        log.warning("mirror: could not take job %s off its queue: %s", job_id, exc.__class__.__name__)
