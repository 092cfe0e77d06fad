"""What a client application sees and removes: its jobs' counts, listings, status and results,
and deletions. Each read returns plain data or a small frozen view; adapters never see a model.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, bindparam, cast, delete, func, insert, null, select, union_all, update
from sqlalchemy.orm import Session

from app.db.models import Blob, Job, JobCount, JobCountDelta, PurgeItem, RangeDelete, Result
from app.domain.errors import BadArgument, BadJobState, NotFound, NotOwner
from app.domain.states import DELETED, WIRE_STATES, JobState
from app.services import counters, result_cache
from app.services import statements as sql
from app.services.ports import Mirror

MAX_BIGINT = 2**63 - 1  # LIMIT is a 64-bit integer on both databases


def owned_job(session: Session, client_id: int, job_id: int, *, lock: bool = False) -> Job:
    q = select(Job).where(Job.id == job_id)
    if lock and session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    job = session.scalar(q)
    if job is None or job.state == DELETED:
        raise NotFound(f"unknown jobId {job_id}")
    if job.client_id != client_id:
        raise NotOwner(f"jobId {job_id} belongs to another client application")
    return job


def counts(session: Session, client_id: int) -> list[tuple[int, int]]:
    """(state, count) for each state with at least one of the client's jobs, by state.

    Constant time in the number of jobs: the totals the triggers on jobs keep (migration 0008) plus
    the client's deltas not folded yet, read in one statement (one snapshot, so exact)."""
    rows = session.execute(counts_query(), {"c_client": client_id}).all()
    return [(int(s), int(n)) for s, n in rows]


@functools.lru_cache(maxsize=1)
def counts_query():  # type: ignore[no-untyped-def]
    both = union_all(
        select(JobCount.state, JobCount.n).where(JobCount.client_id == bindparam("c_client")),
        select(JobCountDelta.state, JobCountDelta.n).where(JobCountDelta.client_id == bindparam("c_client")),
    ).subquery()
    total = func.sum(both.c.n)
    return (
        select(both.c.state, total)
        .where(both.c.state != DELETED)
        .group_by(both.c.state)
        .having(total > 0)
        .order_by(both.c.state)
    )


def list_jobs(
    session: Session, client_id: int, *, state: int | None = None, after_id: int | None = None, limit: int | None = None
) -> list[tuple[int, int]]:
    """(jobId, state) of the client's jobs ordered by jobId; `state` is a wire jobStatus (0-4)."""
    if state is not None and state not in WIRE_STATES:
        raise BadArgument(f"jobStatus {state} is not one of {', '.join(str(s) for s in sorted(WIRE_STATES))}")
    if limit is not None and limit < 0:
        raise BadArgument("maxResults must not be negative")
    if limit is not None and limit > MAX_BIGINT:
        raise BadArgument(f"maxResults must be at most {MAX_BIGINT}")
    q = select(Job.id, Job.state).where(Job.client_id == client_id)
    q = q.where(Job.state == state) if state is not None else q.where(sql.IS_VISIBLE)
    if after_id is not None:
        q = q.where(Job.id > after_id)
    q = q.order_by(Job.id)
    if limit is not None:
        q = q.limit(limit)
    return [(int(i), int(s)) for i, s in session.execute(q).all()]


@dataclass(frozen=True)
class JobStatusView:
    """getContentConvertStatus's fields."""

    id: int
    guid: str
    state: int
    application: str
    version: str
    format: str
    submitted_at: datetime
    updated_at: datetime
    attempts: int
    failure_reason: str | None
    cached_from: int | None = None  # the jobId whose stored result this job shares (result cache)


def status_of(session: Session, client_id: int, job_id: int) -> JobStatusView:
    j = owned_job(session, client_id, job_id)
    return JobStatusView(
        j.id, j.guid, j.state, j.application, j.version, j.format, j.submitted_at, j.updated_at, j.attempts, j.failure_reason,
        j.cached_from,
    )


@dataclass(frozen=True)
class ResultView:
    """A completed job's result: what the wire says about it, and the stored document to send."""

    format: str
    filename: str
    size: int
    blob_id: int


def result_of(session: Session, client_id: int, job_id: int) -> ResultView:
    job = owned_job(session, client_id, job_id)
    if job.state != JobState.COMPLETE:
        raise BadJobState(f"jobId {job_id} is in state {job.state}, not COMPLETE")
    row = session.execute(
        select(Result.format, Result.filename, Blob.size, Result.blob_id)
        .join(Blob, Blob.id == Result.blob_id)
        .where(Result.job_id == job.id)
    ).first()
    if row is None:
        raise BadJobState(f"jobId {job_id} has no result")
    return ResultView(row[0], row[1], int(row[2]), row[3])


def delete_one(session: Session, now: datetime, client_id: int, job_id: int, *, mirror: Mirror | None = None) -> None:
    """Hide the job at once (purged later by beat); in-flight jobs are refused (518). Jobs that
    followed it (result cache) are queued on their own (published through `mirror`)."""
    job = owned_job(session, client_id, job_id, lock=True)
    if JobState(job.state).in_flight:
        raise BadJobState(f"jobId {job_id} is being processed (state {job.state}) and cannot be deleted")
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, sql.IS_DELETABLE)
        .values(state=DELETED, updated_at=now, lease_token=None)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        raise BadJobState(f"jobId {job_id} was just handed to a factory and cannot be deleted")
    result_cache.release_followers(session, now, mirror, job_id)


CANCELLED, CANCEL_REQUESTED = "cancelled", "cancel requested"


def cancel_one(session: Session, now: datetime, client_id: int, job_id: int, *, mirror: Mirror | None = None) -> str:
    """cancelContentConversion: a QUEUED job is removed as by `delete_one` (CANCELLED); an in-flight
    one is marked (CANCEL_REQUESTED): its factory learns it on its next jobs.extend and the job ends
    FAILED "cancelled by client" (app.services.leases). An ended job cannot be cancelled (518)."""
    job = owned_job(session, client_id, job_id, lock=True)
    state = JobState(job.state)
    if state == JobState.QUEUED:
        delete_one(session, now, client_id, job_id, mirror=mirror)
        counters.bump(session, counters.CANCELLED)
        return CANCELLED
    if state.terminal:
        raise BadJobState(f"jobId {job_id} has ended (state {job.state}) and cannot be cancelled")
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, sql.IS_IN_FLIGHT)
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        raise BadJobState(f"jobId {job_id} changed state while being cancelled; try again")
    if not job.cancel_requested:
        counters.bump(session, counters.CANCELLED)
    return CANCEL_REQUESTED


def cancel_any(session: Session, now: datetime, job_id: int, *, mirror: Mirror | None = None) -> str:
    """Operator (`convhub jobs cancel`): cancel any client's job, as its client would."""
    client_id = session.scalar(select(Job.client_id).where(Job.id == job_id, sql.IS_VISIBLE))
    if client_id is None:
        raise NotFound(f"unknown job {job_id}")
    return cancel_one(session, now, client_id, job_id, mirror=mirror)


@dataclass(frozen=True)
class RangeDeleted:
    deleted: int
    skipped: int


def delete_range(
    session: Session, now: datetime, client_id: int, delete_from: datetime, delete_to: datetime | None, *, mirror: Mirror | None = None
) -> RangeDeleted:
    """Remove the client's jobs with delete_from <= submitted < delete_to; in-flight ones are skipped.

    PostgreSQL: one DELETE removes the rows and their results (gone from every listing, count and
    claim from the commit on) and records in `purge_items` the uploads they used and the results'
    bytes, which beat frees later (app.services.maintenance.purge_deleted). A DELETE leaves the
    indexes alone, where the UPDATE to DELETED it replaces (migration 0009) wrote a new row version
    and ~6 index entries per row: a 100k range took seconds. SQLite: one UPDATE marks the rows
    DELETED (invisible from the commit on), purged by beat. The claim's `state = 0` condition and
    this statement's state condition make a racing poll and delete exclusive per row.
    """
    delete_to = delete_to or now
    if delete_to < delete_from:
        raise BadArgument("deleteTo is before deleteFrom")
    window = (Job.client_id == client_id, Job.submitted_at >= delete_from, Job.submitted_at < delete_to)
    if session.get_bind().dialect.name == "postgresql":
        # Hold the in-flight rows first: none can finish or fail between the DELETE and the count
        # below, so every job in the window is counted once, deleted or skipped. (A job claimed
        # meanwhile is skipped by the DELETE and seen by the count.)
        session.execute(select(Job.id).where(*window, sql.IS_IN_FLIGHT).order_by(Job.id).with_for_update())
        # One statement, one snapshot: the rows deleted are exactly the rows recorded.
        gone = delete(Job).where(*window, sql.IS_DELETABLE).returning(Job.id, Job.content_id).cte("gone")
        # Their results go in the same statement (no foreign key cascade since 0009: its trigger
        # ran once per deleted row).
        results = delete(Result).where(Result.job_id == gone.c.id).returning(Result.blob_id).cte("results")
        items = (
            insert(PurgeItem)
            .from_select(
                ["content_id", "blob_id"],
                union_all(
                    select(gone.c.content_id, cast(null(), BigInteger)).distinct(),
                    select(cast(null(), BigInteger), results.c.blob_id).distinct(),
                ),
            )
            .returning(PurgeItem.id)
            .cte("items")
        )
        deleted = int(session.scalar(select(func.count()).select_from(gone).add_cte(items)) or 0)
        # Jobs following a deleted one (result cache) are queued on their own.
        result_cache.release_orphaned_followers(session, now, mirror)
    else:
        # SQLite deletes a row from every index (13 on jobs) and checks each foreign key pointing
        # at it, where an UPDATE rewrites only the entries of the columns it changes: marking the
        # rows DELETED (purged by beat) stays the cheaper way there (100k: 1.1 s against 1.8 s).
        # Its writers are serial: nothing changes between these statements.
        res = session.execute(
            update(Job)
            .where(*window, sql.IS_DELETABLE)
            .values(state=DELETED, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        deleted = int(res.rowcount or 0)  # type: ignore[attr-defined]
        result_cache.release_followers(session, now, mirror, select(Job.id).where(*window, sql.IS_DELETED))
    skipped = int(session.scalar(select(func.count()).select_from(Job).where(*window, sql.IS_IN_FLIGHT)) or 0)
    session.add(
        RangeDelete(
            client_id=client_id, delete_from=delete_from, delete_to=delete_to, requested_at=now, deleted_count=deleted, skipped_count=skipped
        )
    )
    return RangeDeleted(deleted, skipped)
