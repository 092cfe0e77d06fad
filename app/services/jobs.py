"""Job use cases: submit, claim, extend, finish, fail, delete, list, and the beat-driven maintenance.

Every state change that a factory makes is fenced: a conditional UPDATE that names the lease token,
the owner and `lease_expires > now`, so a stale holder changes nothing.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, literal, literal_column, or_, select, union_all, update
from sqlalchemy.orm import Session

from app.db.blobs import delete_blobs, store_blob
from app.db.engine import after_commit
from app.db.models import DELETED, Blob, Callback, Content, Job, RangeDelete, Result
from app.domain.errors import BadArgument, BadJobState, LeaseNotHeld, NotFound, NotOwner, TooLarge
from app.domain.leases import LeasePolicy, after_lost_attempt, lease_is_live
from app.domain.matching import DOCTYPES, FORMATS, WorkerSpec, doctype_of, validate_pages
from app.domain.states import IN_FLIGHT, JobState, require_transition
from app.services import counters
from app.services.ports import Mirror, Notifier

# ---------------------------------------------------------------- submit


def upload(
    session: Session, now: datetime, *, client_id: int, filename: str, parts: Iterable[bytes] | bytes, max_bytes: int
) -> Content:
    """Store an uploaded ODF document; its doctype comes from the file name."""
    filename = (filename or "").strip()
    doctype = doctype_of(filename)
    if doctype is None:
        raise BadArgument(f"filename {filename!r} must end in one of: {', '.join('.' + d for d in DOCTYPES)}")
    if isinstance(parts, bytes | bytearray) and len(parts) > max_bytes:
        raise TooLarge(f"document is {len(parts)} bytes; the limit is {max_bytes}")
    blob = _store_checked(session, parts, now, max_bytes, "document")
    content = Content(
        identifier=str(uuid.uuid4()), client_id=client_id, blob_id=blob.id, filename=filename[:500], doctype=doctype, created_at=now
    )
    session.add(content)
    session.flush()
    return content


def _store_checked(session: Session, parts: Iterable[bytes] | bytes, now: datetime, max_bytes: int, what: str) -> Blob:
    """Store the bytes; TooLarge or empty raise (the caller's transaction then stores nothing)."""
    blob = store_blob(session, parts, now)
    if blob.size > max_bytes:
        raise TooLarge(f"{what} is {blob.size} bytes; the limit is {max_bytes}")
    if blob.size == 0:
        raise BadArgument("document is empty" if what == "document" else f"{what} document is empty")
    return blob


def find_content(session: Session, client_id: int, identifier: str) -> Content:
    content = session.scalar(select(Content).where(Content.identifier == identifier))
    if content is None:
        raise NotFound(f"unknown content identifier {identifier!r}")
    if content.client_id != client_id:
        raise NotOwner("the content belongs to another client application")
    return content


def submit(
    session: Session,
    now: datetime,
    mirror: Mirror,
    *,
    client_id: int,
    content: Content,
    application: str,
    version: str,
    fmt: str = "",
    page_start: int = 1,
    page_end: int = 0,
    max_attempts: int = 3,
    success_url: str | None = None,
    failure_url: str | None = None,
) -> Job:
    """Queue a conversion; its message is published only after the commit."""
    application, version, fmt = application.strip(), version.strip(), (fmt or "").strip().lower()
    if not application or not version:
        raise BadArgument("application and version are required")
    if fmt and fmt not in FORMATS:
        raise BadArgument(f"format {fmt!r} must be one of {', '.join(FORMATS)} or empty")
    try:
        validate_pages(page_start, page_end)
    except ValueError as exc:
        raise BadArgument(str(exc)) from None
    job = Job(
        guid=str(uuid.uuid4()),
        client_id=client_id,
        content_id=content.id,
        application=application,
        version=version,
        doctype=content.doctype,
        format=fmt,
        page_start=page_start,
        page_end=page_end,
        state=int(JobState.QUEUED),
        submitted_at=now,
        updated_at=now,
        attempts=0,
        max_attempts=max_attempts,
        success_url=success_url or None,
        failure_url=failure_url or None,
    )
    session.add(job)
    session.flush()
    job_id = job.id
    after_commit(session, lambda: mirror.publish(job_id, application, version))
    return job


# ---------------------------------------------------------------- claim

# The state predicates of the partial indexes are written as SQL literals, not bind parameters:
# a planner can only use `ix_jobs_queued_pair ... WHERE state = 0` (or the lease index's
# `state IN (1, 2)`) when the query's own predicate is the same literal. With `state = $1`,
# psycopg 3's prepared (generic) plans and SQLite both fall back to scanning the backlog.
IS_QUEUED = Job.state == literal_column("0")
IS_IN_FLIGHT = Job.state.in_([literal_column("1"), literal_column("2")])


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


def _worker_filter(workers: Sequence[WorkerSpec]):  # type: ignore[no-untyped-def]
    """SQL condition: a QUEUED job one of these workers accepts (all of one pair)."""
    conds = []
    for w in workers:
        conds.append(and_(Job.doctype.in_(sorted(w.doctypes)), or_(Job.format == "", Job.format.in_(sorted(w.formats)))))
    return or_(*conds) if len(conds) > 1 else conds[0]


def _by_pair(workers: Iterable[WorkerSpec]) -> dict[tuple[str, str], tuple[WorkerSpec, ...]]:
    pairs: dict[tuple[str, str], tuple[WorkerSpec, ...]] = {}
    for w in workers:
        pairs[w.pair] = pairs.get(w.pair, ()) + (w,)
    return pairs


# Statements depend only on a factory's worker set, so they are built once per set: constructing
# SQLAlchemy expression trees per poll cost more than the database's own work.
@functools.lru_cache(maxsize=4096)
def _head_query(pair: tuple[str, str], workers: Sequence[WorkerSpec]):  # type: ignore[no-untyped-def]
    # Matches ix_jobs_queued_pair (application, version, id) WHERE state = 0: an index walk in id
    # order that stops at the first acceptable row; nothing is sorted.
    return (
        select(Job.id)
        .where(IS_QUEUED, Job.application == pair[0], Job.version == pair[1])
        .where(_worker_filter(workers))
        .order_by(Job.submitted_at, Job.id)
        .limit(1)
    )


@functools.lru_cache(maxsize=4096)
def _probe_query(workers: tuple[WorkerSpec, ...]):  # type: ignore[no-untyped-def]
    pairs = list(_by_pair(workers).items())
    # One round trip: each pair's head is its own LIMIT 1 index walk, glued with UNION ALL.
    heads = [
        select(sub.c.id, sub.c.submitted_at, literal(i).label("pair"))
        for i, (pair, ws) in enumerate(pairs)
        for sub in [_head_query(pair, ws).add_columns(Job.submitted_at).subquery()]
    ]
    return [p for p, _ in pairs], (heads[0] if len(heads) == 1 else union_all(*heads))


def probe(session: Session, workers: Sequence[WorkerSpec]) -> list[tuple[tuple[datetime, int], tuple[str, str]]]:
    """Read-only: the oldest acceptable QUEUED job per pair, oldest first. No write, no scan."""
    if not workers:
        return []
    pairs, q = _probe_query(tuple(workers))
    found = [((row.submitted_at, row.id), pairs[row.pair]) for row in session.execute(q)]
    found.sort()
    return found


def _claim_update(target, is_pg: bool):  # type: ignore[no-untyped-def]
    """UPDATE ... WHERE id = (target) AND state = 0 RETURNING id; values are added per call."""
    if is_pg:
        target = target.with_for_update(skip_locked=True)
    return update(Job).where(Job.id == target.scalar_subquery(), IS_QUEUED).returning(Job.id)


@functools.lru_cache(maxsize=4096)
def _head_claim_update(pair: tuple[str, str], workers: tuple[WorkerSpec, ...], is_pg: bool):  # type: ignore[no-untyped-def]
    return _claim_update(_head_query(pair, workers), is_pg)


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
    by_pair = _by_pair(workers)
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
            target = select(Job.id).where(Job.id == job_id, IS_QUEUED).where(
                Job.application == pair[0], Job.version == pair[1], _worker_filter(ws)
            )
            stmt = _claim_update(target, is_pg)
        else:
            stmt = _head_claim_update(pair, ws, is_pg)
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


# ---------------------------------------------------------------- lease holders


def _held(session: Session, now: datetime, guid: str, owner: str, token: str | None) -> Job:
    """The job if `owner` holds a live lease on it (token checked when given), else LeaseNotHeld."""
    q = select(Job).where(Job.guid == guid)
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    job = session.scalar(q)
    if job is None or job.state == DELETED:
        raise NotFound(f"unknown job {guid!r}")
    if (
        job.state not in IN_FLIGHT
        or job.lease_owner != owner
        or not lease_is_live(job.lease_token, job.lease_expires, token, now)
    ):
        raise LeaseNotHeld(f"lease on job {guid} is not held by {owner!r}", job_id=job.id)
    return job


def _fence(job: Job, now: datetime):  # type: ignore[no-untyped-def]
    return (
        Job.id == job.id,
        Job.lease_token == job.lease_token,
        Job.lease_expires > now,
        Job.state.in_([int(s) for s in IN_FLIGHT]),
    )


def _fenced_update(session: Session, job: Job, now: datetime, *, state: JobState, **values: object) -> None:
    require_transition(job.state, state)
    values["state"] = int(state)
    if state.terminal:
        values["finished_at"] = now  # completions/failures per minute (app.services.trends)
    res = session.execute(update(Job).where(*_fence(job, now)).values(**values).execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        raise LeaseNotHeld(f"lease on job {job.guid} was lost", job_id=job.id)


@dataclass(frozen=True)
class Extended:
    lease_expires: datetime
    cancelled: bool  # True when the per-attempt cap is reached: the lease cannot be renewed again


def extend(session: Session, now: datetime, policy: LeasePolicy, *, guid: str, owner: str, token: str | None) -> Extended:
    """Renew the lease (capped per attempt) and move REQUESTED_FOR_PROCESSING -> PROCESSING."""
    job = _held(session, now, guid, owner, token)
    assert job.leased_at is not None
    expires = max(policy.extended_expiry(job.leased_at, now), job.lease_expires or now)
    _fenced_update(session, job, now, state=JobState.PROCESSING, lease_expires=expires, updated_at=now)
    cap = job.leased_at + timedelta(seconds=policy.max_total_seconds)
    return Extended(expires, expires >= cap)


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
) -> str:
    """Store the result and complete the job; returns the result's GUID."""
    job = _held(session, now, guid, owner, token)
    fmt = (fmt or "").strip().lower()
    if job.format and fmt != job.format:
        raise BadArgument(f"job {guid} asks for format {job.format!r}, got {fmt!r}")
    if fmt not in FORMATS:
        raise BadArgument(f"format {fmt!r} must be one of {', '.join(FORMATS)}")
    blob = _store_checked(session, parts, now, max_bytes, "result")
    filename = session.scalar(select(Content.filename).where(Content.id == job.content_id)) or "document"
    ext = {"pdf": "pdf", "png": "png", "odf": job.doctype}[fmt]
    result = Result(
        guid=str(uuid.uuid4()),
        job_id=job.id,
        blob_id=blob.id,
        format=fmt,
        filename=f"{filename.rsplit('.', 1)[0]}.{ext}",
        created_at=now,
    )
    # An earlier attempt's result cannot exist (COMPLETE is final), but a requeued job's might.
    old = session.scalar(select(Result).where(Result.job_id == job.id))
    if old is not None:
        old_blob = old.blob_id
        session.delete(old)
        session.flush()
        delete_blobs(session, [old_blob])
    session.add(result)
    _fenced_update(
        session, job, now, state=JobState.COMPLETE, lease_token=None, lease_expires=None, updated_at=now, failure_reason=None
    )
    _queue_callback(session, now, notifier, job.id, job.success_url, JobState.COMPLETE)
    return result.guid


def fail(
    session: Session, now: datetime, policy: LeasePolicy, notifier: Notifier, mirror: Mirror, *, guid: str, owner: str, token: str | None, reason: str
) -> JobState:
    """End the lease without a result: one attempt used; back to QUEUED or FAILED when used up."""
    job = _held(session, now, guid, owner, token)
    reason = " ".join((reason or "failed").split())[:2000] or "failed"
    new = after_lost_attempt(job.attempts, job.max_attempts)
    _fenced_update(
        session, job, now, state=new, lease_token=None, lease_expires=None, lease_owner=None, updated_at=now, failure_reason=reason
    )
    _after_attempt_lost(session, now, notifier, mirror, job.id, job.application, job.version, job.failure_url, new)
    return new


def _after_attempt_lost(
    session: Session, now: datetime, notifier: Notifier, mirror: Mirror, job_id: int, application: str, version: str, failure_url: str | None, new: JobState
) -> None:
    if new == JobState.QUEUED:
        after_commit(session, lambda: mirror.publish(job_id, application, version))
    else:
        _queue_callback(session, now, notifier, job_id, failure_url, JobState.FAILED)


def _queue_callback(session: Session, now: datetime, notifier: Notifier, job_id: int, url: str | None, state: JobState) -> None:
    if not url:
        return
    cb = Callback(job_id=job_id, url=url, job_status=int(state), attempts=0, next_attempt_at=now, created_at=now)
    session.add(cb)
    session.flush()
    cb_id = cb.id
    after_commit(session, lambda: notifier.send_callback(cb_id))


# ---------------------------------------------------------------- client views


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
    """(state, count) for each state with at least one of the client's jobs, by state."""
    rows = session.execute(
        select(Job.state, func.count())
        .where(Job.client_id == client_id, Job.state != DELETED)
        .group_by(Job.state)
        .order_by(Job.state)
    ).all()
    return [(int(s), int(n)) for s, n in rows]


def list_jobs(
    session: Session, client_id: int, *, state: int | None = None, after_id: int | None = None, limit: int | None = None
) -> list[tuple[int, int]]:
    """(jobId, state) of the client's jobs ordered by jobId."""
    if state is not None and state not in {int(s) for s in JobState}:
        raise BadArgument(f"jobStatus {state} is not one of 0-4")
    q = select(Job.id, Job.state).where(Job.client_id == client_id)
    q = q.where(Job.state == state) if state is not None else q.where(Job.state != DELETED)
    if after_id is not None:
        q = q.where(Job.id > after_id)
    q = q.order_by(Job.id)
    if limit is not None:
        q = q.limit(limit)
    return [(int(i), int(s)) for i, s in session.execute(q).all()]


def result_of(session: Session, client_id: int, job_id: int) -> Result:
    job = owned_job(session, client_id, job_id)
    if job.state != JobState.COMPLETE:
        raise BadJobState(f"jobId {job_id} is in state {job.state}, not COMPLETE")
    result = session.scalar(select(Result).where(Result.job_id == job.id))
    if result is None:
        raise BadJobState(f"jobId {job_id} has no result")
    return result


def delete_one(session: Session, now: datetime, client_id: int, job_id: int) -> None:
    """Hide the job at once (purged later by beat); in-flight jobs are refused (518)."""
    job = owned_job(session, client_id, job_id, lock=True)
    if JobState(job.state).in_flight:
        raise BadJobState(f"jobId {job_id} is being processed (state {job.state}) and cannot be deleted")
    res = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_([0, 3, 4]))
        .values(state=DELETED, updated_at=now, lease_token=None)
        .execution_options(synchronize_session=False)
    )
    if res.rowcount != 1:  # type: ignore[attr-defined]
        raise BadJobState(f"jobId {job_id} was just handed to a factory and cannot be deleted")


@dataclass(frozen=True)
class RangeDeleted:
    deleted: int
    skipped: int


def delete_range(session: Session, now: datetime, client_id: int, delete_from: datetime, delete_to: datetime | None) -> RangeDeleted:
    """Remove the client's jobs with delete_from <= submitted < delete_to; in-flight ones are skipped.

    One UPDATE marks the rows DELETED (invisible to every listing, count and claim from the commit
    on); beat purges rows and bytes later. The claim's `state = 0` condition and this UPDATE's state
    condition make a racing poll and delete exclusive per row.
    """
    delete_to = delete_to or now
    if delete_to < delete_from:
        raise BadArgument("deleteTo is before deleteFrom")
    window = (Job.client_id == client_id, Job.submitted_at >= delete_from, Job.submitted_at < delete_to)
    if session.get_bind().dialect.name == "postgresql":
        # Hold the in-flight rows first: none can finish or fail between the UPDATE and the count
        # below, so every job in the window is counted once, deleted or skipped. (A job claimed
        # meanwhile is skipped by the UPDATE and seen by the count.) SQLite writers are serial.
        session.execute(select(Job.id).where(*window, IS_IN_FLIGHT).order_by(Job.id).with_for_update())
    res = session.execute(
        update(Job)
        .where(*window, Job.state.in_([0, 3, 4]))
        .values(state=DELETED, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    deleted = int(res.rowcount or 0)  # type: ignore[attr-defined]
    skipped = int(session.scalar(select(func.count()).select_from(Job).where(*window, IS_IN_FLIGHT)) or 0)
    session.add(
        RangeDelete(
            client_id=client_id, delete_from=delete_from, delete_to=delete_to, requested_at=now, deleted_count=deleted, skipped_count=skipped
        )
    )
    return RangeDeleted(deleted, skipped)


# ---------------------------------------------------------------- maintenance (beat)


def reclaim_expired(session: Session, now: datetime, notifier: Notifier, mirror: Mirror, *, limit: int = 1000) -> list[tuple[int, JobState]]:
    """Expired leases: one attempt used; the job goes back to QUEUED or to FAILED."""
    q = (
        select(Job)
        .where(IS_IN_FLIGHT, Job.lease_expires <= now)
        .order_by(Job.lease_expires)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update(skip_locked=True)
    out = []
    for job in session.scalars(q).all():
        new = after_lost_attempt(job.attempts, job.max_attempts)
        require_transition(job.state, new)
        res = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.lease_token == job.lease_token, Job.lease_expires <= now)
            .values(
                state=int(new),
                lease_token=None,
                lease_expires=None,
                lease_owner=None,
                updated_at=now,
                failure_reason=f"lease expired (attempt {job.attempts} of {job.max_attempts})",
                **({"finished_at": now} if new.terminal else {}),  # trends: failures per minute
            )
            .execution_options(synchronize_session=False)
        )
        if res.rowcount == 1:  # type: ignore[attr-defined]
            _after_attempt_lost(session, now, notifier, mirror, job.id, job.application, job.version, job.failure_url, new)
            out.append((job.id, new))
    counters.bump(session, counters.LEASES_EXPIRED, len(out))
    return out


def has_expired_lease(session: Session, now: datetime) -> bool:
    """One probe of the lease index (partial, in-flight rows only)."""
    return session.scalar(select(Job.id).where(IS_IN_FLIGHT, Job.lease_expires <= now).limit(1)) is not None


def requeue(session: Session, now: datetime, mirror: Mirror, job_id: int) -> Job:
    """Operator: put any job back in QUEUED with a fresh attempt budget (lease cancelled)."""
    job = session.get(Job, job_id)
    if job is None or job.state == DELETED:
        raise NotFound(f"unknown job {job_id}")
    if job.state != JobState.QUEUED:  # a QUEUED job only gets a fresh attempt budget
        require_transition(job.state, JobState.QUEUED)
    job.state = int(JobState.QUEUED)
    job.attempts = 0
    job.lease_token = job.lease_owner = None
    job.lease_expires = job.leased_at = None
    job.failure_reason = None
    job.updated_at = now
    session.flush()
    app_, ver = job.application, job.version
    after_commit(session, lambda: mirror.publish(job_id, app_, ver))
    return job


def queued_by_pair(session: Session) -> dict[tuple[str, str], tuple[int, datetime]]:
    """Per pair: number of QUEUED jobs and the oldest submission among them."""
    rows = session.execute(
        select(Job.application, Job.version, func.count(), func.min(Job.submitted_at))
        .where(IS_QUEUED)
        .group_by(Job.application, Job.version)
    ).all()
    return {(a, v): (int(n), oldest) for a, v, n, oldest in rows}


def queued_ids(session: Session, pair: tuple[str, str]) -> list[int]:
    return list(
        session.scalars(
            select(Job.id).where(IS_QUEUED, Job.application == pair[0], Job.version == pair[1]).order_by(Job.submitted_at, Job.id)
        ).all()
    )


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
        mirror.rebuild(pair[0], pair[1], ids)
        if ids:
            counters.put(session, marker, ids[0])
        repaired[f"{pair[0]}|{pair[1]}"] = len(ids) - have
    return repaired


def purge_deleted(session: Session, now: datetime, *, batch: int = 5000) -> int:
    """Physically remove jobs marked DELETED (and their results and orphaned uploads)."""
    ids = list(session.scalars(select(Job.id).where(Job.state == DELETED).limit(batch)).all())
    remove_jobs(session, ids)
    if len(ids) < batch:  # all caught up: every pending range delete is now purged
        session.execute(
            update(RangeDelete).where(RangeDelete.purged_at.is_(None)).values(purged_at=now).execution_options(synchronize_session=False)
        )
    return len(ids)


def retention_purge(session: Session, now: datetime, days: int, *, batch: int = 5000) -> int:
    """Remove COMPLETE/FAILED jobs untouched for `days`, and uploads no job uses that are as old."""
    if days <= 0:
        return 0
    cutoff = now - timedelta(days=days)
    ids = list(
        session.scalars(
            select(Job.id).where(Job.state.in_([int(JobState.COMPLETE), int(JobState.FAILED)]), Job.updated_at < cutoff).limit(batch)
        ).all()
    )
    remove_jobs(session, ids)
    orphans = session.scalars(
        select(Content.id)
        .where(Content.created_at < cutoff, ~select(Job.id).where(Job.content_id == Content.id).exists())
        .limit(batch)
    ).all()
    remove_contents(session, list(orphans))
    session.execute(delete(Callback).where(Callback.done_at.is_not(None), Callback.done_at < cutoff))
    return len(ids)


def remove_contents(session: Session, content_ids: list[int]) -> None:
    """Delete uploads and their bytes (callers make sure no job uses them)."""
    if not content_ids:
        return
    blob_ids = list(session.scalars(select(Content.blob_id).where(Content.id.in_(content_ids))).all())
    session.execute(delete(Content).where(Content.id.in_(content_ids)))
    delete_blobs(session, blob_ids)


def remove_jobs(session: Session, ids: list[int]) -> None:
    """Delete jobs with their results, and the uploads no other job uses."""
    if not ids:
        return
    results = session.execute(select(Result.id, Result.blob_id).where(Result.job_id.in_(ids))).all()
    if results:
        session.execute(delete(Result).where(Result.id.in_([r[0] for r in results])))
        delete_blobs(session, [r[1] for r in results])
    content_ids = set(session.scalars(select(Job.content_id).where(Job.id.in_(ids))).all())
    session.execute(delete(Job).where(Job.id.in_(ids)))
    # Uploads shared with surviving jobs stay; uploads now unused go with their last job.
    still_used = set(session.scalars(select(Job.content_id).where(Job.content_id.in_(content_ids))).all())
    remove_contents(session, sorted(content_ids - still_used))


def is_queued(session: Session, job_id: int) -> bool:
    return session.scalar(select(Job.state).where(Job.id == job_id)) == int(JobState.QUEUED)
