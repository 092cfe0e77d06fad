"""Named integers in the database, shared by every process.

Event totals (leases expired, callback failures) are bumped in the event's own transaction; a few
markers (e.g. the head job of the mirror's last rebuild per pair) are put and read; `try_lock` takes a
named lock for one transaction.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.db.models import Counter

LEASES_EXPIRED = "leases_expired"
CALLBACK_FAILURES = "callback_failures"
# Farm policy (app.services.result_cache, quarantine, client_views.cancel_one): counts only.
CACHE_HITS = "result_cache_hits"  # submissions completed at once from a COMPLETE job's result
CACHE_FOLLOWS = "result_cache_follows"  # submissions that followed a QUEUED or in-flight job
QUARANTINED = "content_quarantined"  # documents quarantined
CANCELLED = "jobs_cancelled"  # cancelContentConversion / `jobs cancel` accepted


def bump(session: Session, name: str, n: int = 1) -> None:
    if n <= 0:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(Counter).values(name=name, value=n)
    session.execute(stmt.on_conflict_do_update(index_elements=[Counter.name], set_={"value": Counter.value + n}))


def put(session: Session, name: str, value: int) -> None:
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(Counter).values(name=name, value=value)
    session.execute(stmt.on_conflict_do_update(index_elements=[Counter.name], set_={"value": value}))


def try_lock(session: Session, name: str) -> bool:
    """Take the lock called `name` for the rest of this transaction, or answer False at once when
    another transaction holds it (PostgreSQL: a transaction-level advisory lock). On SQLite a write
    transaction already excludes every other writer: True."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
    return bool(session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": key}))


def read(session: Session, name: str) -> int | None:
    return session.scalar(select(Counter.value).where(Counter.name == name))


def read_all(session: Session) -> dict[str, int]:
    return {name: int(value) for name, value in session.execute(select(Counter.name, Counter.value))}
