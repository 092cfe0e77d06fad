"""The result cache and in-flight merging (SPEC "Farm policy", result cache).

A job records its cache key: the SHA-256 of (content SHA-256, application, version, format,
pageStart, pageEnd). A submission whose key matches

- a COMPLETE job (the same client's, or any client's when the operator shares results across
  clients) completes at once: its Result points at the leader's stored bytes (stored once; the
  removal paths free bytes only when no result or upload references them any more);
- a QUEUED or in-flight job follows it: QUEUED with `follows_job_id` set, so no claim and no mirror
  message sees it; it completes with its leader, or is released and queued on its own when the
  leader fails, is cancelled or is deleted.

Neither completion is a transition of the domain's table (QUEUED -> COMPLETE is not one: no factory
converted these jobs): a hit is a job stored COMPLETE, and a follower completes through its own
conditional UPDATE (`state = QUEUED AND follows_job_id = leader`).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, exists, select, update
from sqlalchemy.orm import Session, aliased

from app.db.engine import after_commit
from app.db.models import Blob, Content, Job, Result
from app.domain.states import JobState
from app.services import callbacks
from app.services.ports import Mirror, Notifier

LEADING = (int(JobState.QUEUED), int(JobState.REQUESTED_FOR_PROCESSING), int(JobState.PROCESSING))


def cache_key(content_sha256: str, application: str, version: str, fmt: str, page_start: int, page_end: int) -> str:
    text = "\n".join((content_sha256, application, version, fmt, str(page_start), str(page_end)))
    return hashlib.sha256(text.encode()).hexdigest()


def content_sha256(session: Session, content: Content) -> str:
    return session.scalar(select(Blob.sha256).where(Blob.id == content.blob_id)) or ""


def key_of(session: Session, content: Content, job: Job) -> str:
    return cache_key(content_sha256(session, content), job.application, job.version, job.format, job.page_start, job.page_end)


@dataclass(frozen=True)
class Hit:
    """The job a new submission shares with: COMPLETE (its result blob given) or still to run."""

    leader_id: int
    complete: bool
    result_blob_id: int | None = None
    result_format: str | None = None


def lookup(session: Session, key: str, client_id: int, *, across_clients: bool = False) -> Hit | None:
    """The newest COMPLETE job with this key and a result, else the oldest QUEUED/in-flight leader.

    PostgreSQL: the leader found running is held FOR SHARE until the commit, so its completion
    (a locking write) comes after the follower is stored and completes it; a leader that completed
    while this looked is found COMPLETE by the second look."""
    scope = () if across_clients else (Job.client_id == client_id,)
    done = _complete(session, key, scope)
    if done is not None:
        return done
    q = (
        select(Job.id)
        .where(
            Job.cache_key == key, *scope, Job.state.in_(LEADING), Job.follows_job_id.is_(None), Job.cancel_requested.is_(False)
        )
        .order_by(Job.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(read=True)
    running = session.scalar(q)
    if running is not None:
        return Hit(int(running), False)
    return _complete(session, key, scope)


def _complete(session: Session, key: str, scope: tuple[Any, ...]) -> Hit | None:
    done = session.execute(
        select(Job.id, Job.cached_from, Result.blob_id, Result.format)
        .join(Result, Result.job_id == Job.id)
        .where(Job.cache_key == key, *scope, Job.state == int(JobState.COMPLETE))
        .order_by(Job.id.desc())
        .limit(1)
    ).first()
    if done is not None and _hold_blob(session, int(done[2])):
        # cachedFrom names the job that was converted, also when the hit is itself a cached one.
        return Hit(int(done[1] or done[0]), True, int(done[2]), str(done[3]))
    return None


def _hold_blob(session: Session, blob_id: int) -> bool:
    """PostgreSQL: hold the blob FOR KEY SHARE until the commit, so a purge racing this hit either
    sees the new result or has already removed the bytes (False: treat as a miss)."""
    if session.get_bind().dialect.name != "postgresql":
        return True
    return session.scalar(select(Blob.id).where(Blob.id == blob_id).with_for_update(key_share=True)) is not None


def result_filename(content_filename: str, fmt: str, doctype: str) -> str:
    ext = {"pdf": "pdf", "png": "png", "odf": doctype}.get(fmt, fmt)
    return f"{(content_filename or 'document').rsplit('.', 1)[0]}.{ext}"


def complete_from_cache(session: Session, now: datetime, notifier: Notifier | None, job: Job, hit: Hit, filename: str) -> None:
    """A new job, just stored, completes at once with the leader's stored result."""
    assert hit.result_blob_id is not None and hit.result_format is not None
    job.state = int(JobState.COMPLETE)
    job.cached_from = hit.leader_id
    job.finished_at = job.updated_at = now
    session.add(
        Result(
            guid=str(uuid.uuid4()),
            job_id=job.id,
            blob_id=hit.result_blob_id,
            format=hit.result_format,
            filename=result_filename(filename, hit.result_format, job.doctype),
            created_at=now,
        )
    )
    session.flush()
    if notifier is not None:
        callbacks.queue(session, now, notifier, job.id, job.success_url, JobState.COMPLETE)


def complete_followers(session: Session, now: datetime, notifier: Notifier, leader_id: int, result: Result) -> list[int]:
    """The leader just completed with `result`: its QUEUED followers complete with the same bytes."""
    followers = session.execute(
        select(Job.id, Job.doctype, Job.success_url, Content.filename)
        .join(Content, Content.id == Job.content_id)
        .where(Job.follows_job_id == leader_id, Job.state == int(JobState.QUEUED))
    ).all()
    done = []
    for job_id, doctype, success_url, filename in followers:
        res = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.state == int(JobState.QUEUED), Job.follows_job_id == leader_id)
            .values(state=int(JobState.COMPLETE), follows_job_id=None, cached_from=leader_id, finished_at=now, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount != 1:  # type: ignore[attr-defined]
            continue
        session.add(
            Result(
                guid=str(uuid.uuid4()),
                job_id=job_id,
                blob_id=result.blob_id,
                format=result.format,
                filename=result_filename(filename, result.format, doctype),
                created_at=now,
            )
        )
        callbacks.queue(session, now, notifier, job_id, success_url, JobState.COMPLETE)
        done.append(int(job_id))
    session.flush()
    return done


def release_followers(session: Session, now: datetime, mirror: Mirror | None, leader: int | Select[Any]) -> list[int]:
    """The leader will not complete (failed, cancelled, deleted): its followers are queued on their
    own and published. `leader` is a job id, or a SELECT of job ids."""
    # A SELECT of leaders is matched from the followers' side: the explicit IS NOT NULL lets the
    # planner start from ix_jobs_follows (followers only) and probe each follower's leader, instead
    # of reading every leader to find the few that have followers.
    cond = Job.follows_job_id == leader if isinstance(leader, int) else and_(Job.follows_job_id.is_not(None), Job.follows_job_id.in_(leader.scalar_subquery()))
    return _release(session, now, mirror, cond)


def release_orphaned_followers(session: Session, now: datetime, mirror: Mirror | None) -> list[int]:
    """Followers whose leader's row is gone (a range delete removed it) are queued on their own and
    published. Starts from ix_jobs_follows (QUEUED followers only, few) and probes each leader."""
    leader = aliased(Job)
    return _release(session, now, mirror, and_(Job.follows_job_id.is_not(None), ~exists().where(leader.id == Job.follows_job_id)))


def _release(session: Session, now: datetime, mirror: Mirror | None, cond: Any) -> list[int]:
    rows = session.execute(select(Job.id, Job.application, Job.version).where(cond, Job.state == int(JobState.QUEUED))).all()
    if not rows:
        return []
    ids = [int(r[0]) for r in rows]
    session.execute(
        update(Job)
        .where(Job.id.in_(ids), Job.state == int(JobState.QUEUED))
        .values(follows_job_id=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if mirror is not None:
        for job_id, application, version in rows:
            after_commit(session, lambda j=job_id, a=application, v=version: mirror.publish(j, a, v))
    return ids
