"""Beat-driven maintenance and operator repairs: reclaim expired leases, repair the mirror, purge
deleted jobs, apply retention, requeue a job, and the queue inspections they need.

The `*_all` functions are what the beat tasks call: each opens its own transactions on the
Database and loops until a batch comes back short, so one task run catches up completely.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.db.engine import Database, after_commit
from app.db.models import (
    Callback,
    Content,
    ContentStrike,
    Job,
    JobCount,
    JobCountDelta,
    PurgeItem,
    RangeDelete,
)
from app.db.removal import delete_unreferenced, remove_contents, remove_jobs, remove_unused_contents
from app.domain.errors import NotFound
from app.domain.leases import after_lost_attempt
from app.domain.states import DELETED, JobState, require_transition
from app.services import admin, callbacks, counters, quarantine, request_ids, result_cache
from app.services import statements as sql
from app.services.claims import is_queued
from app.services.leases import CANCELLED_BY_CLIENT
from app.services.ports import Mirror, Notifier

log = logging.getLogger("convhub.tasks")

RECLAIM_BATCH = 1000
PURGE_BATCH = 5000

# ---------------------------------------------------------------- expired leases


def reclaim_expired(
    session: Session, now: datetime, notifier: Notifier, mirror: Mirror, *, limit: int = RECLAIM_BATCH
) -> list[tuple[int, JobState]]:
    """Expired leases, up to `limit` as one set: one attempt used; each job goes back to QUEUED or
    to FAILED (app.domain.leases.after_lost_attempt).

    Each expiry is a strike against the document on the factory that held it (a hang or a crash,
    app.services.quarantine). A job its client cancelled ends FAILED "cancelled by client" instead.

    Statements per batch, whatever its size: the UPDATE of the batch (PostgreSQL: one statement
    that also picks and locks; SQLite: the pick, then the UPDATE); the strikes' INSERT and the
    quarantine decision for their documents (two reads); the followers of the failed jobs (one
    read); the counter. Per job only what is rare: a failure callback row, a quarantine. The
    requeued jobs' messages go to the broker in one batch after the commit."""
    pick, stmt = sql.reclaim_statements(session.get_bind().dialect.name == "postgresql", CANCELLED_BY_CLIENT)
    params: dict[str, object] = {"r_now": now, "r_limit": limit}
    if pick is None:
        rows = [(r, r.owner, r.sha256) for r in session.execute(stmt, params).all()]
    else:
        picked = {r.id: r for r in session.execute(pick, params).all()}
        if not picked:
            return []
        fence = [(i, r.lease_token) for i, r in picked.items()]
        rows = [(r, picked[r.id].owner, picked[r.id].sha256) for r in session.execute(stmt, {**params, "r_fence": fence}).all()]
    out: list[tuple[int, JobState]] = []
    requeued: list[tuple[int, str, str]] = []
    failed: list[int] = []
    struck: list[tuple[str, str]] = []
    for r, owner, sha in sorted(rows, key=lambda t: t[0].id):
        new = JobState.FAILED if r.cancel_requested else after_lost_attempt(r.attempts, r.max_attempts)
        require_transition(JobState.PROCESSING, new)
        if new != r.state:  # the SQL form of the rule and the domain's disagree: a bug, not a state to store
            raise RuntimeError(f"reclaim of job {r.id}: SQL chose state {r.state}, the domain rule {int(new)}")
        if new == JobState.QUEUED:
            requeued.append((r.id, r.application, r.version))
        else:
            failed.append(r.id)
            callbacks.queue(session, now, notifier, r.id, r.failure_url, JobState.FAILED)
        if not r.cancel_requested and owner and sha:
            struck.append((sha, owner))
        out.append((r.id, new))
    if requeued:
        after_commit(session, lambda: mirror.publish_many(requeued))
    if failed:  # their followers are queued on their own
        result_cache.release_followers(session, now, mirror, select(Job.id).where(Job.id.in_(failed)))
    quarantine.strike_many(session, now, notifier, struck, reason="conversion hung or crashed (lease expired)")
    counters.bump(session, counters.LEASES_EXPIRED, len(out))
    return out


def reclaim_all(db: Database, now: datetime, notifier: Notifier, mirror: Mirror) -> list[tuple[int, JobState]]:
    """Reclaim every expired lease, a batch per transaction; (job id, new state) of each."""
    done: list[tuple[int, JobState]] = []
    while True:
        with db.session() as s:
            batch = reclaim_expired(s, now, notifier, mirror)
        done += batch
        for job_id, state in batch:
            log.info("lease expired job=%s outcome=%s", job_id, state.name)
        if len(batch) < RECLAIM_BATCH:
            return done


def has_expired_lease(session: Session, now: datetime) -> bool:
    """One probe of the lease index (partial, in-flight rows only)."""
    return session.scalar(select(Job.id).where(sql.IS_IN_FLIGHT, Job.lease_expires <= now).limit(1)) is not None


# ---------------------------------------------------------------- operator


def requeue(session: Session, now: datetime, mirror: Mirror, job_id: int) -> Job:
    """Operator: put any job back in QUEUED with a fresh attempt budget (lease cancelled)."""
    job = session.get(Job, job_id)
    if job is None or job.state == DELETED:
        raise NotFound(f"unknown job {job_id}")
    if job.state != JobState.QUEUED:  # a QUEUED job only gets a fresh attempt budget
        require_transition(job.state, JobState.QUEUED)
    job.state = int(JobState.QUEUED)
    job.follows_job_id = None  # converted on its own
    job.cancel_requested = False
    job.attempts = 0
    job.lease_token = job.lease_owner = None
    job.lease_expires = job.leased_at = None
    job.failure_reason = None
    job.updated_at = now
    session.flush()
    app_, ver = job.application, job.version
    after_commit(session, lambda: mirror.publish(job_id, app_, ver))
    return job


# ---------------------------------------------------------------- the mirror


def queued_by_pair(session: Session) -> dict[tuple[str, str], tuple[int, datetime]]:
    """Per pair: number of QUEUED jobs and the oldest submission among them."""
    rows = session.execute(
        select(Job.application, Job.version, func.count(), func.min(Job.submitted_at))
        .where(sql.IS_QUEUED, sql.NOT_FOLLOWING)
        .group_by(Job.application, Job.version)
    ).all()
    return {(a, v): (int(n), oldest) for a, v, n, oldest in rows}


def queued_ids(session: Session, pair: tuple[str, str]) -> list[int]:
    return list(
        session.scalars(
            select(Job.id)
            .where(sql.IS_QUEUED, sql.NOT_FOLLOWING, Job.application == pair[0], Job.version == pair[1])
            .order_by(Job.submitted_at, Job.id)
        ).all()
    )


RECONCILE_LOCK = "mirror_reconcile_lock"  # held (counters.try_lock) while a reconciliation runs

# Stale messages dropped per pair per reconciliation at most (each costs a broker round trip).
TRIM_LIMIT = 10_000


def reconcile(
    session: Session, mirror: Mirror, now: datetime, *, stale_after: timedelta, known_pairs: Iterable[tuple[str, str]] = ()
) -> dict[str, int]:
    """Repair the mirror: rebuild a pair's queue (purge, then publish its QUEUED jobs oldest first)

    - when the queue is shorter than the backlog: messages were lost (a broker restart);
    - when the pair's oldest QUEUED job has waited longer than `stale_after`: lengths cannot show a
      lost message hidden by a stale one (of a deleted job), and a stalled queue never drains the
      stale ones. Once per stall: the head job of the rebuild is remembered (in `counters`), and
      the same stall is not rebuilt again.

    A queue longer than its backlog holds stale messages (deleted jobs, or jobs claimed while
    another process held their message): the stale heads are dropped, so an idle pair's queue
    empties instead of keeping them until the next job arrives. Reported as a negative number.
    """
    backlog = queued_by_pair(session)
    repaired = {}
    for pair in set(backlog) | set(known_pairs):
        want, oldest = backlog.get(pair, (0, None))
        have = mirror.queue_length(*pair)
        if have is None:
            continue
        if have > want:
            dropped = mirror.trim(pair[0], pair[1], lambda jid: is_queued(session, jid), min(have - want, TRIM_LIMIT))
            if dropped:
                repaired[f"{pair[0]}|{pair[1]}"] = -dropped
                have -= dropped
        marker = f"mirror_rebuilt_head:{pair[0]}|{pair[1]}"
        ids = None
        if have >= want:
            if oldest is None or now - oldest <= stale_after:
                continue
            ids = queued_ids(session, pair)
            if counters.read(session, marker) == ids[0]:
                continue  # this stall was rebuilt already
        ids = ids if ids is not None else queued_ids(session, pair)
        verified = mirror.rebuild(pair[0], pair[1], ids)
        if ids:
            counters.put(session, marker, ids[0])
        repaired[f"{pair[0]}|{pair[1]}"] = verified - have  # what the queue holds now, not what was sent
    return repaired


def reconcile_mirror(db: Database, mirror: Mirror, now: datetime, *, stale_after: timedelta) -> dict[str, int]:
    """Beat's reconciliation: every pair some factory serves (idle and disabled ones too, for their
    stale messages), then what the broker keeps of consumed messages."""
    with db.session() as s:
        # One reconciliation at a time: two at once (beat's runs piled up behind a broker outage, on
        # two worker threads) each purged and re-published the backlog, and the queue held it twice.
        if not counters.try_lock(s, RECONCILE_LOCK):
            log.info("mirror: another reconciliation is running; this one is skipped")
            return {}
        repaired = reconcile(s, mirror, now, stale_after=stale_after, known_pairs=admin.served_pairs(s, include_disabled=True))
    if repaired:
        log.warning("mirror reconciled: %s", repaired)
    swept = mirror.sweep_consumed()
    if swept:
        log.info("embedded broker: %d consumed message rows deleted", swept)
    return repaired


# ---------------------------------------------------------------- job counts


def fold_job_counts(session: Session) -> int:
    """PostgreSQL: fold the count deltas the triggers on jobs appended into the totals (one
    statement: the deltas it deletes are the ones it adds, so a concurrent read sees either both
    or neither); the number of (client, state) totals changed. SQLite keeps the totals directly: nothing to do."""
    if session.get_bind().dialect.name != "postgresql":
        return 0
    d = delete(JobCountDelta).returning(JobCountDelta.client_id, JobCountDelta.state, JobCountDelta.n).cte("d")
    sums = select(d.c.client_id, d.c.state, func.sum(d.c.n).label("n")).group_by(d.c.client_id, d.c.state).cte("s")
    ins = pg_insert(JobCount).from_select(["client_id", "state", "n"], select(sums.c.client_id, sums.c.state, sums.c.n))
    ins = ins.on_conflict_do_update(index_elements=[JobCount.client_id, JobCount.state], set_={"n": JobCount.n + ins.excluded.n})
    return len(session.execute(ins.add_cte(d).add_cte(sums).returning(JobCount.client_id)).all())


# ---------------------------------------------------------------- purges


def purge_deleted(session: Session, now: datetime, *, batch: int = PURGE_BATCH) -> int:
    """Physically remove jobs marked DELETED (and their results and orphaned uploads), and free what
    range deletes left (`purge_items`: uploads no job uses any more, result bytes nothing
    references any more); how many of both."""
    ids = list(session.scalars(select(Job.id).where(sql.IS_DELETED).limit(batch)).all())
    remove_jobs(session, ids)
    items = session.execute(select(PurgeItem.id, PurgeItem.content_id, PurgeItem.blob_id).order_by(PurgeItem.id).limit(batch)).all()
    if items:
        session.execute(delete(PurgeItem).where(PurgeItem.id.in_([i for i, _, _ in items])))
        remove_unused_contents(session, {int(c) for _, c, _ in items if c is not None})
        delete_unreferenced(session, [int(b) for _, _, b in items if b is not None])
    if len(ids) < batch and len(items) < batch:  # all caught up: every pending range delete is now purged
        session.execute(
            update(RangeDelete).where(RangeDelete.purged_at.is_(None)).values(purged_at=now).execution_options(synchronize_session=False)
        )
    return len(ids) + len(items)


def purge_deleted_all(db: Database, now: datetime) -> int:
    """Purge every job marked DELETED, a batch per transaction; how many."""
    total = 0
    while True:
        with db.session() as s:
            n = purge_deleted(s, now)
        total += n
        if n < PURGE_BATCH:
            return total


def retention_purge(session: Session, now: datetime, days: int, *, batch: int = PURGE_BATCH) -> int:
    """Remove COMPLETE/FAILED jobs untouched for `days`, uploads no job uses that are as old, and
    request ids as old."""
    if days <= 0:
        return 0
    cutoff = now - timedelta(days=days)
    ids = list(session.scalars(select(Job.id).where(sql.IS_TERMINAL, Job.updated_at < cutoff).limit(batch)).all())
    remove_jobs(session, ids)
    orphans = session.scalars(
        select(Content.id)
        .where(Content.created_at < cutoff, ~select(Job.id).where(Job.content_id == Content.id).exists())
        .limit(batch)
    ).all()
    remove_contents(session, list(orphans))
    session.execute(delete(Callback).where(Callback.done_at.is_not(None), Callback.done_at < cutoff))
    # Strikes against documents (app.services.quarantine) count within the retention window only.
    session.execute(delete(ContentStrike).where(ContentStrike.at < cutoff))
    request_ids.expire(session, cutoff)
    return len(ids)


def retention_all(db: Database, now: datetime, days: int) -> int:
    """Beat's retention run (one batch per run, as before: the hourly schedule catches up)."""
    with db.session() as s:
        return retention_purge(s, now, days)
