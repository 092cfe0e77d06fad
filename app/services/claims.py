"""Claims: hand the oldest acceptable QUEUED job to a factory under a new lease.

`probe` reads (no write, no scan); `claim` is one conditional UPDATE per pair tried. The statements
are built once per worker set in `app.services.statements`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Blob, Content, Job
from app.domain.leases import LeasePolicy
from app.domain.matching import WorkerSpec
from app.domain.states import JobState
from app.services import statements as sql


@dataclass(frozen=True)
class Claimed:
    """A job handed to a factory under a lease."""

    id: int
    guid: str
    application: str
    version: str
    doctype: str
    format: str
    page_start: int
    page_end: int
    filename: str
    blob_id: int
    size: int
    lease_token: str
    lease_expires: datetime
    attempt: int


def probe(session: Session, workers: Sequence[WorkerSpec]) -> list[tuple[tuple[datetime, int], tuple[str, str]]]:
    """Read-only: the oldest acceptable QUEUED job per pair, oldest first. No write, no scan."""
    if not workers:
        return []
    pairs, q = sql.probe_query(tuple(workers))
    found = [((row.submitted_at, row.id), pairs[row.pair]) for row in session.execute(q)]
    found.sort()
    return found


def claim(
    session: Session,
    now: datetime,
    policy: LeasePolicy,
    *,
    owner: str,
    workers: Sequence[WorkerSpec],
    pairs: Sequence[tuple[str, str]] | None = None,
    job_id: int | None = None,
) -> Claimed | None:
    """Atomically move the oldest acceptable QUEUED job to REQUESTED_FOR_PROCESSING under a new lease.

    PostgreSQL: the candidate row is locked FOR UPDATE SKIP LOCKED inside the UPDATE, so concurrent
    claimers take different rows. SQLite: the one UPDATE runs under the database write lock
    (BEGIN IMMEDIATE), so the `state = 0` condition is checked and set atomically.
    `job_id` claims that job only (push-style Celery factories, which hold its message).
    """
    by_pair = sql.by_pair(workers)
    if pairs is not None:
        order = list(pairs)
    elif job_id is None and len(by_pair) > 1:
        order = [p for _, p in probe(session, workers)]  # oldest first across pairs
    else:
        order = list(by_pair)
    is_pg = session.get_bind().dialect.name == "postgresql"
    token = policy.new_token()
    expires = policy.grant_expiry(now)
    values = dict(
        state=int(JobState.REQUESTED_FOR_PROCESSING),
        lease_token=token,
        lease_owner=owner,
        leased_at=now,
        lease_expires=expires,
        attempts=Job.attempts + 1,
        updated_at=now,
    )
    for pair in order:
        ws = by_pair.get(pair)
        if not ws:
            continue
        if job_id is not None:
            stmt = sql.job_claim_update(job_id, pair, ws, is_pg)
        else:
            stmt = sql.head_claim_update(pair, ws, is_pg)
        claimed_id = session.execute(stmt.values(**values)).scalar()
        if claimed_id is None:
            continue
        job, filename, blob_id, size = session.execute(
            select(Job, Content.filename, Content.blob_id, Blob.size)
            .join(Content, Content.id == Job.content_id)
            .join(Blob, Blob.id == Content.blob_id)
            .where(Job.id == claimed_id)
        ).one()
        return Claimed(
            id=job.id,
            guid=job.guid,
            application=job.application,
            version=job.version,
            doctype=job.doctype,
            format=job.format,
            page_start=job.page_start,
            page_end=job.page_end,
            filename=filename,
            blob_id=blob_id,
            size=size,
            lease_token=token,
            lease_expires=expires,
            attempt=job.attempts,
        )
    return None


def is_queued(session: Session, job_id: int) -> bool:
    """Whether the job is still QUEUED and claimable (the mirror drops messages of jobs that are not)."""
    row = session.execute(select(Job.state, Job.follows_job_id).where(Job.id == job_id)).first()
    # A follower of a cached conversion is QUEUED but never claimed: its message is stale too.
    return row is not None and row[0] == int(JobState.QUEUED) and row[1] is None
