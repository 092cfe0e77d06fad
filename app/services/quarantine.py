"""Poison documents (SPEC "Farm policy", permanent failure and quarantine).

A strike is a permanent failure (`jobs.fail ... permanent`) or an expired lease of a job, recorded
against its content hash and the factory that held it. A hash with strikes from
`QUARANTINE_FACTORIES` distinct factories is quarantined: its QUEUED jobs become FAILED
("quarantined: <reason>") and a new submission of it is refused (Quarantined, SOAP 541) until an
operator releases it (which also forgets its strikes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ARRAY, String, Text, delete, func, insert, literal, select, update
from sqlalchemy.orm import Session

from app.db.models import Blob, Content, ContentStrike, Job, Quarantine
from app.domain.errors import NotFound, Quarantined
from app.domain.states import JobState
from app.services import callbacks, counters
from app.services.ports import Notifier

log = logging.getLogger("convhub.quarantine")

QUARANTINE_FACTORIES = 2  # distinct factories


def hash_of_job(session: Session, job_id: int) -> str | None:
    return session.scalar(
        select(Blob.sha256).join(Content, Content.blob_id == Blob.id).join(Job, Job.content_id == Content.id).where(Job.id == job_id)
    )


def active(session: Session, sha256: str) -> Quarantine | None:
    return session.scalar(select(Quarantine).where(Quarantine.sha256 == sha256, Quarantine.released_at.is_(None)))


def check(session: Session, sha256: str) -> None:
    """Quarantined when this content hash is quarantined (contentConvert answers 541)."""
    q = active(session, sha256)
    if q is not None:
        raise Quarantined(f"the document is quarantined since {q.since:%Y-%m-%d %H:%M:%S} UTC: {q.reason}")


def strike(session: Session, now: datetime, notifier: Notifier, *, job_id: int, factory: str, reason: str) -> bool:
    """Record a permanent failure or an expired lease of the job's document on `factory`; quarantine
    the document when that makes `QUARANTINE_FACTORIES` distinct factories. True when quarantined now."""
    sha = hash_of_job(session, job_id)
    if not sha:
        return False
    session.add(ContentStrike(sha256=sha, factory=factory[:200], reason=reason[:2000], at=now))
    session.flush()
    if active(session, sha) is not None:
        fail_queued(session, now, notifier, sha, "document is quarantined")
        return False
    factories = sorted(set(session.scalars(select(ContentStrike.factory).where(ContentStrike.sha256 == sha)).all()))
    if len(factories) < QUARANTINE_FACTORIES:
        return False
    quarantine(session, now, notifier, sha, reason=f"{reason} (on {len(factories)} factories)", factories=factories)
    return True


def strike_many(session: Session, now: datetime, notifier: Notifier, struck: list[tuple[str, str]], *, reason: str) -> list[str]:
    """`strike` for a set of (content hash, factory) pairs at once (a reclaim batch): the strikes in
    one INSERT, then the decision for their hashes in set form: already quarantined ones fail their
    QUEUED jobs again; those that now have strikes from `QUARANTINE_FACTORIES` distinct factories
    are quarantined. The hashes quarantined now."""
    if not struck:
        return []
    if session.get_bind().dialect.name == "postgresql":  # one statement, two arrays: no row-per-row executemany
        session.execute(
            insert(ContentStrike).from_select(
                ["sha256", "factory", "reason", "at"],
                select(
                    func.unnest(literal([sha for sha, _ in struck], ARRAY(String))),
                    func.unnest(literal([f[:200] for _, f in struck], ARRAY(String))),
                    literal(reason[:2000], Text),
                    literal(now, ContentStrike.at.type),
                ),
            )
        )
    else:
        session.execute(insert(ContentStrike), [{"sha256": sha, "factory": f[:200], "reason": reason[:2000], "at": now} for sha, f in struck])
    shas = sorted({sha for sha, _ in struck})
    active = set(session.scalars(select(Quarantine.sha256).where(Quarantine.sha256.in_(shas), Quarantine.released_at.is_(None))).all())
    for sha in sorted(active):
        fail_queued(session, now, notifier, sha, "document is quarantined")
    rest = [sha for sha in shas if sha not in active]
    if not rest:
        return []
    pairs = session.execute(
        select(ContentStrike.sha256, ContentStrike.factory)
        .where(
            ContentStrike.sha256.in_(
                select(ContentStrike.sha256)
                .where(ContentStrike.sha256.in_(rest))
                .group_by(ContentStrike.sha256)
                .having(func.count(ContentStrike.factory.distinct()) >= QUARANTINE_FACTORIES)
            )
        )
        .distinct()
    ).all()
    by_sha: dict[str, set[str]] = {}
    for sha, f in pairs:
        by_sha.setdefault(sha, set()).add(f)
    for sha, fs in sorted(by_sha.items()):
        factories = sorted(fs)
        quarantine(session, now, notifier, sha, reason=f"{reason} (on {len(factories)} factories)", factories=factories)
    return sorted(by_sha)


def quarantine(session: Session, now: datetime, notifier: Notifier, sha256: str, *, reason: str, factories: list[str]) -> int:
    """Quarantine the hash (a row per hash, reset when quarantined again); fail its QUEUED jobs."""
    row = session.scalar(select(Quarantine).where(Quarantine.sha256 == sha256))
    if row is None:
        session.add(Quarantine(sha256=sha256, reason=reason, factories=",".join(factories), since=now, released_at=None))
    else:
        row.reason, row.factories, row.since, row.released_at = reason, ",".join(factories), now, None
    session.flush()
    counters.bump(session, counters.QUARANTINED, 1)
    n = fail_queued(session, now, notifier, sha256, reason)
    log.warning("content %s quarantined (%s); %d queued jobs failed", sha256, reason, n)
    return n


def fail_queued(session: Session, now: datetime, notifier: Notifier, sha256: str, reason: str) -> int:
    """Every QUEUED job of this content hash (followers included) becomes FAILED "quarantined: ..."."""
    rows = session.execute(
        select(Job.id, Job.failure_url)
        .join(Content, Content.id == Job.content_id)
        .join(Blob, Blob.id == Content.blob_id)
        .where(Blob.sha256 == sha256, Job.state == int(JobState.QUEUED))
    ).all()
    failed = 0
    for job_id, failure_url in rows:
        res = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == int(JobState.QUEUED))
            .values(
                state=int(JobState.FAILED), follows_job_id=None, failure_reason=f"quarantined: {reason}"[:2000],
                finished_at=now, updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if res.rowcount == 1:  # type: ignore[attr-defined]
            callbacks.queue(session, now, notifier, int(job_id), failure_url, JobState.FAILED)
            failed += 1
    return failed


@dataclass(frozen=True)
class QuarantineView:
    sha256: str
    reason: str
    factories: tuple[str, ...]
    since: datetime
    released_at: datetime | None


def listing(session: Session, *, include_released: bool = False, limit: int = 500) -> list[QuarantineView]:
    q = select(Quarantine)
    if not include_released:
        q = q.where(Quarantine.released_at.is_(None))
    rows = session.scalars(q.order_by(Quarantine.since.desc()).limit(limit)).all()
    return [QuarantineView(r.sha256, r.reason, tuple(f for f in r.factories.split(",") if f), r.since, r.released_at) for r in rows]


def count_active(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(Quarantine).where(Quarantine.released_at.is_(None))) or 0)


def release(session: Session, now: datetime, sha256: str) -> QuarantineView:
    """Operator: release a quarantined hash; its strikes are forgotten, new submissions convert again."""
    row = active(session, (sha256 or "").strip().lower())
    if row is None:
        raise NotFound(f"content {sha256!r} is not quarantined")
    row.released_at = now
    session.execute(delete(ContentStrike).where(ContentStrike.sha256 == row.sha256))
    session.flush()
    return QuarantineView(row.sha256, row.reason, tuple(f for f in row.factories.split(",") if f), row.since, row.released_at)
