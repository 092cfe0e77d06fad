"""The SQL of the job use cases, in one place: state predicates, lease fences and the statements
the claim path builds once per worker set.

The use cases (`claims`, `leases`, `client_views`, `maintenance`, `ops_views`) read as prose above
this module; a reader following `jobs.poll` from the wire ends here, at the UPDATE that claims.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import (
    String,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.orm import aliased

from app.db.blobs import CHUNK
from app.db.models import Blob, BlobChunk, ClientApplication, Content, Job, Result
from app.domain.matching import WorkerSpec
from app.domain.states import DELETABLE, DELETED, IN_FLIGHT, TERMINAL

# The state predicates of the partial indexes are written as SQL literals, not bind parameters:
# a planner can only use `ix_jobs_queued_vtag ... WHERE state = 0` (or the lease index's
# `state IN (1, 2)`) when the query's own predicate is the same literal. With `state = $1`,
# psycopg 3's prepared (generic) plans and SQLite both fall back to scanning the backlog.
IS_QUEUED = Job.state == literal_column("0")
IS_IN_FLIGHT = Job.state.in_([literal_column("1"), literal_column("2")])
# Followers of a cached conversion (app.services.result_cache) are QUEUED but never claimed; the
# claim index leaves them out with the same literal predicate.
NOT_FOLLOWING = Job.follows_job_id.is_(None)
# The other predicates are bound parameters: no partial index depends on them.
IS_DELETED = Job.state == DELETED
IS_VISIBLE = Job.state != DELETED  # every state a client or an operator may see
IS_DELETABLE = Job.state.in_([int(s) for s in DELETABLE])
IS_TERMINAL = Job.state.in_([int(s) for s in TERMINAL])


def lease_fence(job_id: int, token: str | None, now: datetime):  # type: ignore[no-untyped-def]
    """The condition of every lease holder's write: this lease, still live, job still in flight."""
    return (
        Job.id == job_id,
        Job.lease_token == token,
        Job.lease_expires > now,
        Job.state.in_([int(s) for s in IN_FLIGHT]),
    )


def expired_lease_fence(job_id: int, token: str | None, now: datetime):  # type: ignore[no-untyped-def]
    """The condition of a reclaim: the same lease, and it has expired."""
    return (Job.id == job_id, Job.lease_token == token, Job.lease_expires <= now)


@functools.lru_cache(maxsize=4)
def reclaim_statements(is_pg: bool, cancelled_reason: str):  # type: ignore[no-untyped-def]
    """Reclaim of expired leases as a set (`maintenance.reclaim_expired`): (pick, update).

    Parameters: :r_now, :r_limit; on SQLite also :r_fence, the (id, lease_token) pairs picked.
    The new state is `app.domain.leases.after_lost_attempt` written in SQL (FAILED when the client
    cancelled or the attempts are used up, else QUEUED), so one UPDATE handles the whole batch.

    PostgreSQL: one statement, `pick` is None: WITH picked AS (the expired rows, oldest expiry
    first, FOR UPDATE SKIP LOCKED: a job a finishing factory holds is left to it) UPDATE ... FROM
    picked RETURNING the new state and what the follow-up needs (the old owner and the document's
    hash from `picked`). SQLite (writers are serial): the pick, then the UPDATE fenced by the same
    (id, lease_token) pairs, as the per-job fence did."""
    now = bindparam("r_now", type_=Job.lease_expires.type)
    failed = or_(Job.cancel_requested, Job.attempts >= Job.max_attempts)
    values = {
        "state": case((failed, literal_column("4")), else_=literal_column("0")),
        "failure_reason": case(
            (Job.cancel_requested, literal(cancelled_reason)),
            else_=literal("lease expired (attempt ") + cast(Job.attempts, String) + " of " + cast(Job.max_attempts, String) + ")",
        ),
        "finished_at": case((failed, now), else_=Job.finished_at),  # trends: failures per minute
        "lease_token": None,
        "lease_expires": None,
        "lease_owner": None,
        "updated_at": now,
    }
    pick = (
        select(Job.id, Job.lease_token, Job.lease_owner.label("owner"), Blob.sha256)
        .join(Content, Content.id == Job.content_id)
        .join(Blob, Blob.id == Content.blob_id)
        .where(IS_IN_FLIGHT, Job.lease_expires <= now)
        .order_by(Job.lease_expires)
        .limit(bindparam("r_limit"))
    )
    returned = (Job.id, Job.state, Job.cancel_requested, Job.attempts, Job.max_attempts, Job.application, Job.version, Job.failure_url)
    if is_pg:
        picked = pick.with_for_update(of=Job, skip_locked=True).cte("picked")
        stmt = (
            update(Job)
            .where(Job.id == picked.c.id, IS_IN_FLIGHT, Job.lease_expires <= now)
            .values(**values)
            .returning(*returned, picked.c.owner, picked.c.sha256)
        )
        return None, stmt
    stmt = (
        update(Job)
        .where(tuple_(Job.id, Job.lease_token).in_(bindparam("r_fence", expanding=True)), IS_IN_FLIGHT, Job.lease_expires <= now)
        .values(**values)
        .returning(*returned)
    )
    return pick, stmt


# ---------------------------------------------------------------- the claim


def worker_filter(workers: Sequence[WorkerSpec], t=Job):  # type: ignore[no-untyped-def]
    """SQL condition: a QUEUED job (row of `t`, the jobs table or an alias) one of these workers accepts."""
    conds = []
    for w in workers:
        conds.append(and_(t.doctype.in_(sorted(w.doctypes)), or_(t.format == "", t.format.in_(sorted(w.formats)))))
    return or_(*conds) if len(conds) > 1 else conds[0]


def by_pair(workers: Iterable[WorkerSpec]) -> dict[tuple[str, str], tuple[WorkerSpec, ...]]:
    pairs: dict[tuple[str, str], tuple[WorkerSpec, ...]] = {}
    for w in workers:
        pairs[w.pair] = pairs.get(w.pair, ()) + (w,)
    return pairs


def not_blocked(t=Job):  # type: ignore[no-untyped-def]
    """The job's client is not at its in-flight limit (`max_in_flight`, NULL = unlimited).

    `client_id NOT IN (the blocked clients)`: the set is computed once per statement (a hashed
    subplan over ix_client_applications_limited, with a count of in-flight jobs per limited client)
    and then tested per row. Written as NOT IN, not NOT EXISTS: PostgreSQL turns a NOT EXISTS into
    an anti join whose row estimate collapses to 1, and then prefers a sort of the whole backlog to
    the index walk. A blocked client holding the head of a pair makes the head walk step over its
    queued jobs there (index entries only) until one of its jobs ends."""
    held_job = aliased(Job, name="held")  # built per call: SQLAlchemy memoises an alias's columns lazily, not thread-safely
    held = (
        select(func.count())
        .select_from(held_job)
        .where(held_job.client_id == ClientApplication.id, held_job.state.in_([literal_column("1"), literal_column("2")]))
        .scalar_subquery()
    )
    blocked = select(ClientApplication.id).where(ClientApplication.max_in_flight.is_not(None), held >= ClientApplication.max_in_flight)
    return t.client_id.not_in(blocked)


# Statements depend only on a factory's worker set, so they are built once per set: constructing
# SQLAlchemy expression trees per poll cost more than the database's own work.
@functools.lru_cache(maxsize=4096)
def head_query(pair: tuple[str, str], workers: Sequence[WorkerSpec]):  # type: ignore[no-untyped-def]
    # Matches ix_jobs_queued_vtag (application, version, vtag, id) WHERE state = 0: an index walk in
    # fair-share order that stops at the first acceptable row of a client below its in-flight limit;
    # nothing is sorted.
    return (
        select(Job.id, Job.vtag, Job.client_id)
        .where(IS_QUEUED, NOT_FOLLOWING, Job.application == pair[0], Job.version == pair[1])
        .where(worker_filter(workers), not_blocked())
        .order_by(Job.vtag, Job.id)
        .limit(1)
    )


@functools.lru_cache(maxsize=4096)
def probe_query(workers: tuple[WorkerSpec, ...]):  # type: ignore[no-untyped-def]
    """(the pairs in order, one statement): the head of every pair this worker set serves."""
    pairs = list(by_pair(workers).items())
    # One round trip: each pair's head is its own LIMIT 1 index walk, glued with UNION ALL.
    heads = [
        select(sub.c.id, sub.c.vtag, literal(i).label("pair"))
        for i, (pair, ws) in enumerate(pairs)
        for sub in [head_query(pair, ws).subquery()]
    ]
    return [p for p, _ in pairs], (heads[0] if len(heads) == 1 else union_all(*heads))


@functools.lru_cache(maxsize=4096)
def pick_query(pair: tuple[str, str], workers: tuple[WorkerSpec, ...], is_pg: bool):  # type: ignore[no-untyped-def]
    """One read of the claim: the pair's head K (smallest tag; locked FOR UPDATE SKIP LOCKED on
    PostgreSQL) says which client is served; that client's next job J there, by (priority DESC, id)
    on ix_jobs_queued_client_priority, is handed out, with what the lease answer needs about J
    (content, blob). K's tag is the slot J takes; with one priority and no requeues J is K."""
    best = aliased(Job, name="best")  # per call, see not_blocked
    head = head_query(pair, workers)
    if is_pg:
        head = head.with_for_update(skip_locked=True, of=Job)
    k = head.subquery("k")
    best_id = (
        select(best.id)
        .where(
            best.state == literal_column("0"),
            best.follows_job_id.is_(None),  # followers of a cached conversion are not claimable
            best.client_id == k.c.client_id,
            best.application == pair[0],
            best.version == pair[1],
            worker_filter(workers, best),
        )
        .order_by(best.priority.desc(), best.id)
        .limit(1)
        .correlate(k)
        .scalar_subquery()
    )
    return (
        select(
            k.c.id.label("k_id"),
            k.c.vtag.label("k_vtag"),
            ClientApplication.max_in_flight,
            Job,
            Content.filename,
            Content.blob_id,
            Blob.size,
            BlobChunk.data,  # the document when it is one chunk (no second read for the poll's answer)
        )
        .select_from(k)
        .join(Job, Job.id == best_id)
        .join(ClientApplication, ClientApplication.id == k.c.client_id)
        .join(Content, Content.id == Job.content_id)
        .join(Blob, Blob.id == Content.blob_id)
        .outerjoin(BlobChunk, and_(BlobChunk.blob_id == Blob.id, BlobChunk.seq == 0, Blob.size <= CHUNK))
    )


def claim_by_id(job_id: int, is_pg: bool, *, fenced: bool):  # type: ignore[no-untyped-def]
    """UPDATE ... WHERE id = :id AND state = 0 [AND the client is below its limit] RETURNING id, attempts.

    PostgreSQL: the row is taken FOR UPDATE SKIP LOCKED, so a claim never waits for a row another
    transaction holds (waiting while holding the head's lock could close a cycle with a range
    delete); the claimer's own lock on the head does not count as held."""
    conds = [IS_QUEUED, NOT_FOLLOWING, *([not_blocked()] if fenced else [])]
    if is_pg:
        target = select(Job.id).where(Job.id == job_id, *conds).with_for_update(skip_locked=True)
        return update(Job).where(Job.id == target.scalar_subquery()).returning(Job.id, Job.attempts)
    return update(Job).where(Job.id == job_id, *conds).returning(Job.id, Job.attempts)


def lock_client(client_id: int):  # type: ignore[no-untyped-def]
    """PostgreSQL: serialise claims for one client with an in-flight limit (its row, FOR UPDATE)."""
    return select(ClientApplication.id).where(ClientApplication.id == client_id).with_for_update()


def claim_update(target, is_pg: bool):  # type: ignore[no-untyped-def]
    """UPDATE ... WHERE id = (target) AND state = 0 RETURNING id; values are added per call."""
    if is_pg:
        target = target.with_for_update(skip_locked=True)
    return update(Job).where(Job.id == target.scalar_subquery(), IS_QUEUED).returning(Job.id)


def job_claim_update(job_id: int, pair: tuple[str, str], workers: Sequence[WorkerSpec], is_pg: bool):  # type: ignore[no-untyped-def]
    """Claim that one job, if QUEUED and acceptable to these workers (the push factory)."""
    target = select(Job.id).where(Job.id == job_id, IS_QUEUED, NOT_FOLLOWING).where(
        Job.application == pair[0], Job.version == pair[1], worker_filter(workers)
    )
    return claim_update(target, is_pg)


# ---------------------------------------------------------------- the one-statement claim (PostgreSQL)

# The bound values of `claim_statement`, given per execution (the statement itself is built once).
CLAIM_PARAMS = ("c_state", "c_token", "c_owner", "c_now", "c_expires")


@functools.lru_cache(maxsize=4096)
def claim_statement(pair: tuple[str, str], workers: tuple[WorkerSpec, ...]):  # type: ignore[no-untyped-def]
    """PostgreSQL: the whole claim in one pair as one statement (one round trip, autocommit).

        WITH k  AS (the pair's head, FOR UPDATE SKIP LOCKED),
             j  AS (k's client's next job: priority DESC, id; only when the client has no in-flight limit),
             c  AS (UPDATE jobs SET <lease>, vtag = k.vtag WHERE id = j.id AND state = 0 RETURNING ...),
             sw AS (UPDATE jobs SET vtag = <j's old tag> WHERE id = k.id AND k.id <> c.id: the tag swap)
        SELECT k.id, c.<what the poll answers>, contents.filename, blobs.size,
               <the document when it is one chunk> FROM k LEFT JOIN c ...

    No row: the pair has no claimable job. A row without `id` (the head exists, nothing was claimed):
    the head's client has an in-flight limit, or another claimer took its job; the caller claims in
    a transaction then (`claims.claim`), where the limit is checked under the client's row lock."""
    best, pick = aliased(Job, name="best"), aliased(Job, name="pick")  # per call, see not_blocked
    k = head_query(pair, workers).with_for_update(skip_locked=True, of=Job).cte("k")
    # k's client's next job, as in `pick_query`: a correlated LIMIT 1 walk of
    # ix_jobs_queued_client_priority (a join with ORDER BY ... LIMIT 1 made PostgreSQL sort the client's backlog).
    best_id = (
        select(best.id)
        .where(
            best.state == literal_column("0"),
            best.follows_job_id.is_(None),
            best.client_id == k.c.client_id,
            best.application == pair[0],
            best.version == pair[1],
            worker_filter(workers, best),
        )
        .order_by(best.priority.desc(), best.id)
        .limit(1)
        .correlate(k)
        .scalar_subquery()
    )
    j = (
        select(pick.id, pick.vtag, k.c.id.label("k_id"), k.c.vtag.label("k_vtag"))
        .select_from(k)
        .join(pick, pick.id == best_id)
        .where(k.c.client_id.not_in(select(ClientApplication.id).where(ClientApplication.max_in_flight.is_not(None))))
        .with_for_update(skip_locked=True, of=pick)
        .cte("j")
    )
    c = (
        update(Job)
        .where(Job.id == j.c.id, IS_QUEUED, NOT_FOLLOWING)
        .values(
            state=bindparam("c_state"),
            lease_token=bindparam("c_token"),
            lease_owner=bindparam("c_owner"),
            leased_at=bindparam("c_now"),
            lease_expires=bindparam("c_expires"),
            attempts=Job.attempts + 1,
            updated_at=bindparam("c_now"),
            vtag=j.c.k_vtag,
        )
        .returning(
            Job.id, Job.guid, Job.application, Job.version, Job.doctype, Job.format, Job.page_start, Job.page_end,
            Job.attempts, Job.content_id, j.c.vtag.label("old_vtag"), j.c.k_id,
        )
        .cte("c")
    )
    sw = (
        update(Job)
        .where(Job.id == c.c.k_id, c.c.k_id != c.c.id, IS_QUEUED)
        .values(vtag=c.c.old_vtag)
        .returning(Job.id)
        .cte("sw")
    )
    one_chunk = and_(BlobChunk.blob_id == Blob.id, BlobChunk.seq == 0, Blob.size <= CHUNK)
    return (
        select(
            k.c.id.label("k_id"),
            c.c.id, c.c.guid, c.c.application, c.c.version, c.c.doctype, c.c.format, c.c.page_start, c.c.page_end,
            c.c.attempts,
            Content.filename, Content.blob_id, Blob.size, BlobChunk.data,
            select(func.count()).select_from(sw).scalar_subquery().label("swapped"),
        )
        .select_from(k)
        .outerjoin(c, c.c.k_id == k.c.id)
        .outerjoin(Content, Content.id == c.c.content_id)
        .outerjoin(Blob, Blob.id == Content.blob_id)
        .outerjoin(BlobChunk, one_chunk)
    )


# ---------------------------------------------------------------- the finish


@functools.lru_cache(maxsize=2)
def finishing_query(is_pg: bool):  # type: ignore[no-untyped-def]
    """The job by GUID (:f_guid; locked FOR UPDATE on PostgreSQL) with its document's filename, an
    earlier result (`old_result`, `old_blob`; a requeued job's) and `has_followers` (QUEUED
    followers of the result cache wait for it): one SELECT instead of four."""
    follower = aliased(Job, name="follower")
    q = select(
        Job,
        Content.filename,
        select(Result.id).where(Result.job_id == Job.id).limit(1).scalar_subquery().label("old_result"),
        select(Result.blob_id).where(Result.job_id == Job.id).limit(1).scalar_subquery().label("old_blob"),
        select(follower.id)
        .where(follower.follows_job_id == Job.id, follower.state == literal_column("0"))
        .exists()
        .label("has_followers"),
    ).join(Content, Content.id == Job.content_id).where(Job.guid == bindparam("f_guid"))
    return q.with_for_update(of=Job) if is_pg else q
