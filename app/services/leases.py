"""Lease holders: extend, finish and fail a claimed job.

Every state change a factory makes is fenced: a conditional UPDATE that names the lease token,
the owner and `lease_expires > now` (`statements.lease_fence`), so a stale holder changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.db.engine import after_commit
from app.db.models import Job, Result
from app.db.removal import delete_unreferenced
from app.domain.errors import BadArgument, LeaseNotHeld, NotFound
from app.domain.leases import LeasePolicy, after_lost_attempt, lease_is_live
from app.domain.matching import FORMATS
from app.domain.states import DELETED, IN_FLIGHT, JobState, require_transition
from app.services import callbacks, quarantine, result_cache
from app.services import statements as sql
from app.services.documents import store_checked
from app.services.ports import Mirror, Notifier


def _held(session: Session, now: datetime, guid: str, owner: str, token: str | None) -> Job:
    """The job if `owner` holds a live lease on it (token checked when given), else LeaseNotHeld."""
    q = select(Job).where(Job.guid == guid)
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    job = session.scalar(q)
    if job is None:
        raise NotFound(f"unknown job {guid!r}")
    _check_held(job, now, guid, owner, token)
    return job


def _check_held(job: Job, now: datetime, guid: str, owner: str, token: str | None) -> None:
    if job.state == DELETED:
        raise NotFound(f"unknown job {guid!r}")
    if (
        job.state not in IN_FLIGHT
        or job.lease_owner != owner
        or not lease_is_live(job.lease_token, job.lease_expires, token, now)
    ):
        raise LeaseNotHeld(f"lease on job {guid} is not held by {owner!r}", job_id=job.id)


def _fenced_update(session: Session, job: Job, now: datetime, *, state: JobState, **values: object) -> None:
    require_transition(job.state, state)
    values["state"] = int(state)
    if state.terminal:
        values["finished_at"] = now  # completions/failures per minute (app.services.trends)
    res = session.execute(
        update(Job).where(*sql.lease_fence(job.id, job.lease_token, now)).values(**values).execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseNotHeld(f"lease on job {job.guid} was lost", job_id=job.id)


@dataclass(frozen=True)
class Extended:
    lease_expires: datetime
    # True when the per-attempt cap is reached (the lease cannot be renewed again), or when the
    # client cancelled the job (it is FAILED "cancelled by client" now; the lease has ended).
    cancelled: bool


CANCELLED_BY_CLIENT = "cancelled by client"


def extend(
    session: Session,
    now: datetime,
    policy: LeasePolicy,
    *,
    guid: str,
    owner: str,
    token: str | None,
    notifier: Notifier | None = None,
    mirror: Mirror | None = None,
) -> Extended:
    """Renew the lease (capped per attempt) and move REQUESTED_FOR_PROCESSING -> PROCESSING.

    A job whose client asked to cancel it ends here instead: FAILED "cancelled by client", lease
    ended, `cancelled` answered true (`notifier` and `mirror` carry its failure callback and its
    followers' release)."""
    job = _held(session, now, guid, owner, token)
    if job.cancel_requested:
        end_cancelled(session, now, notifier, mirror, job)
        return Extended(now, True)
    assert job.leased_at is not None
    expires = max(policy.extended_expiry(job.leased_at, now), job.lease_expires or now)
    _fenced_update(session, job, now, state=JobState.PROCESSING, lease_expires=expires, updated_at=now)
    cap = job.leased_at + timedelta(seconds=policy.max_total_seconds)
    return Extended(expires, expires >= cap)


@dataclass(frozen=True)
class Finished:
    """A completed job: its result's GUID, and the job's pair (for metrics labels)."""

    result_guid: str
    application: str
    version: str


def finish(
    session: Session,
    now: datetime,
    notifier: Notifier,
    *,
    guid: str,
    owner: str,
    token: str | None,
    fmt: str,
    parts: Iterable[bytes] | bytes,
    max_bytes: int,
) -> Finished:
    """Store the result and complete the job.

    Round trips (a one-chunk result, no callback URL, no follower): BEGIN; the job with its lease,
    its document's filename, an earlier result and whether followers wait (`_finishing`, one SELECT,
    locked on PostgreSQL); the blob row and its chunk (`store_checked`); the result INSERT; the
    fenced UPDATE; COMMIT."""
    job, filename, old_result, old_blob, has_followers = _finishing(session, now, guid, owner, token)
    fmt = (fmt or "").strip().lower()
    if job.format and fmt != job.format:
        raise BadArgument(f"job {guid} asks for format {job.format!r}, got {fmt!r}")
    if fmt not in FORMATS:
        raise BadArgument(f"format {fmt!r} must be one of {', '.join(FORMATS)}")
    blob = store_checked(session, parts, now, max_bytes, "result")
    ext = {"pdf": "pdf", "png": "png", "odf": job.doctype}[fmt]
    result = Result(
        guid=str(uuid.uuid4()),
        job_id=job.id,
        blob_id=blob.id,
        format=fmt,
        filename=f"{(filename or 'document').rsplit('.', 1)[0]}.{ext}",
        created_at=now,
    )
    # An earlier attempt's result cannot exist (COMPLETE is final), but a requeued job's might.
    if old_result is not None:
        session.execute(delete(Result).where(Result.id == old_result))
        delete_unreferenced(session, [old_blob])  # cached results may share it
    session.add(result)
    _fenced_update(
        session, job, now, state=JobState.COMPLETE, lease_token=None, lease_expires=None, updated_at=now, failure_reason=None
    )
    queue_callback(session, now, notifier, job.id, job.success_url, JobState.COMPLETE)
    if has_followers:
        result_cache.complete_followers(session, now, notifier, job.id, result)
    return Finished(result.guid, job.application, job.version)


def _finishing(session: Session, now: datetime, guid: str, owner: str, token: str | None) -> tuple[Job, str | None, int | None, int, bool]:
    """`_held`, with what a finish needs besides the job in the same SELECT: the document's
    filename, an earlier result (id, blob) and whether QUEUED followers wait for this job."""
    q = sql.finishing_query(session.get_bind().dialect.name == "postgresql")
    row = session.execute(q, {"f_guid": guid}).first()
    if row is None:
        raise NotFound(f"unknown job {guid!r}")
    _check_held(row.Job, now, guid, owner, token)
    return row.Job, row.filename, row.old_result, row.old_blob, bool(row.has_followers)


def fail(
    session: Session,
    now: datetime,
    policy: LeasePolicy,
    notifier: Notifier,
    mirror: Mirror,
    *,
    guid: str,
    owner: str,
    token: str | None,
    reason: str,
    permanent: bool = False,
) -> JobState:
    """End the lease without a result: one attempt used; back to QUEUED or FAILED when used up.

    `permanent`: the document itself cannot be converted: FAILED at once, and a strike against the
    document (app.services.quarantine). A job its client cancelled ends FAILED "cancelled by client"."""
    job = _held(session, now, guid, owner, token)
    reason = " ".join((reason or "failed").split())[:2000] or "failed"
    if job.cancel_requested:
        new, reason, permanent = JobState.FAILED, CANCELLED_BY_CLIENT, False
    elif permanent:
        new = JobState.FAILED
    else:
        new = after_lost_attempt(job.attempts, job.max_attempts)
    _fenced_update(
        session, job, now, state=new, lease_token=None, lease_expires=None, lease_owner=None, updated_at=now, failure_reason=reason
    )
    after_attempt_lost(session, now, notifier, mirror, job.id, job.application, job.version, job.failure_url, new)
    if permanent:
        quarantine.strike(session, now, notifier, job_id=job.id, factory=owner, reason=reason)
    return new


def end_cancelled(session: Session, now: datetime, notifier: Notifier | None, mirror: Mirror | None, job: Job) -> None:
    """A lease holder learns its job was cancelled: FAILED "cancelled by client", lease ended."""
    _fenced_update(
        session, job, now, state=JobState.FAILED, lease_token=None, lease_expires=None, lease_owner=None, updated_at=now,
        failure_reason=CANCELLED_BY_CLIENT,
    )
    if notifier is not None:
        callbacks.queue(session, now, notifier, job.id, job.failure_url, JobState.FAILED)
    result_cache.release_followers(session, now, mirror, job.id)


def after_attempt_lost(
    session: Session, now: datetime, notifier: Notifier, mirror: Mirror, job_id: int, application: str, version: str, failure_url: str | None, new: JobState
) -> None:
    """A lease ended without a result (failed or expired): publish the job again, or notify."""
    if new == JobState.QUEUED:
        after_commit(session, lambda: mirror.publish(job_id, application, version))
    else:
        queue_callback(session, now, notifier, job_id, failure_url, JobState.FAILED)
        result_cache.release_followers(session, now, mirror, job_id)  # they are queued on their own


def queue_callback(session: Session, now: datetime, notifier: Notifier, job_id: int, url: str | None, state: JobState) -> None:
    callbacks.queue(session, now, notifier, job_id, url, state)
