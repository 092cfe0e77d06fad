"""The SQL of the job use cases, in one place: state predicates, lease fences and the statements
the claim path builds once per worker set.

The use cases (`claims`, `leases`, `client_views`, `maintenance`, `ops_views`) read as prose above
this module; a reader following `jobs.poll` from the wire ends here, at the UPDATE that claims.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import and_, func, literal, literal_column, or_, select, union_all, update
from sqlalchemy.orm import aliased

from app.db.models import Blob, ClientApplication, Content, Job
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
        )
        .select_from(k)
        .join(Job, Job.id == best_id)
        .join(ClientApplication, ClientApplication.id == k.c.client_id)
        .join(Content, Content.id == Job.content_id)
        .join(Blob, Blob.id == Content.blob_id)
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
