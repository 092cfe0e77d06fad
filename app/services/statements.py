"""The SQL of the job use cases, in one place: state predicates, lease fences and the statements
the claim path builds once per worker set.

The use cases (`claims`, `leases`, `client_views`, `maintenance`, `ops_views`) read as prose above
this module; a reader following `jobs.poll` from the wire ends here, at the UPDATE that claims.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import and_, literal, literal_column, or_, select, union_all, update

from app.db.models import Job
from app.domain.matching import WorkerSpec
from app.domain.states import DELETABLE, DELETED, IN_FLIGHT, TERMINAL

# The state predicates of the partial indexes are written as SQL literals, not bind parameters:
# a planner can only use `ix_jobs_queued_pair ... WHERE state = 0` (or the lease index's
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


def worker_filter(workers: Sequence[WorkerSpec]):  # type: ignore[no-untyped-def]
    """SQL condition: a QUEUED job one of these workers accepts (all of one pair)."""
    conds = []
    for w in workers:
        conds.append(and_(Job.doctype.in_(sorted(w.doctypes)), or_(Job.format == "", Job.format.in_(sorted(w.formats)))))
    return or_(*conds) if len(conds) > 1 else conds[0]


def by_pair(workers: Iterable[WorkerSpec]) -> dict[tuple[str, str], tuple[WorkerSpec, ...]]:
    pairs: dict[tuple[str, str], tuple[WorkerSpec, ...]] = {}
    for w in workers:
        pairs[w.pair] = pairs.get(w.pair, ()) + (w,)
    return pairs


# Statements depend only on a factory's worker set, so they are built once per set: constructing
# SQLAlchemy expression trees per poll cost more than the database's own work.
@functools.lru_cache(maxsize=4096)
def head_query(pair: tuple[str, str], workers: Sequence[WorkerSpec]):  # type: ignore[no-untyped-def]
    # Matches ix_jobs_queued_pair (application, version, id) WHERE state = 0: an index walk in id
    # order that stops at the first acceptable row; nothing is sorted.
    return (
        select(Job.id)
        .where(IS_QUEUED, NOT_FOLLOWING, Job.application == pair[0], Job.version == pair[1])
        .where(worker_filter(workers))
        .order_by(Job.submitted_at, Job.id)
        .limit(1)
    )


@functools.lru_cache(maxsize=4096)
def probe_query(workers: tuple[WorkerSpec, ...]):  # type: ignore[no-untyped-def]
    """(the pairs in order, one statement): the head of every pair this worker set serves."""
    pairs = list(by_pair(workers).items())
    # One round trip: each pair's head is its own LIMIT 1 index walk, glued with UNION ALL.
    heads = [
        select(sub.c.id, sub.c.submitted_at, literal(i).label("pair"))
        for i, (pair, ws) in enumerate(pairs)
        for sub in [head_query(pair, ws).add_columns(Job.submitted_at).subquery()]
    ]
    return [p for p, _ in pairs], (heads[0] if len(heads) == 1 else union_all(*heads))


def claim_update(target, is_pg: bool):  # type: ignore[no-untyped-def]
    """UPDATE ... WHERE id = (target) AND state = 0 RETURNING id; values are added per call."""
    if is_pg:
        target = target.with_for_update(skip_locked=True)
    return update(Job).where(Job.id == target.scalar_subquery(), IS_QUEUED).returning(Job.id)


@functools.lru_cache(maxsize=4096)
def head_claim_update(pair: tuple[str, str], workers: tuple[WorkerSpec, ...], is_pg: bool):  # type: ignore[no-untyped-def]
    """Claim the head of `pair` for these workers (the pull factory's poll)."""
    return claim_update(head_query(pair, workers), is_pg)


def job_claim_update(job_id: int, pair: tuple[str, str], workers: Sequence[WorkerSpec], is_pg: bool):  # type: ignore[no-untyped-def]
    """Claim that one job, if QUEUED and acceptable to these workers (the push factory)."""
    target = select(Job.id).where(Job.id == job_id, IS_QUEUED, NOT_FOLLOWING).where(
        Job.application == pair[0], Job.version == pair[1], worker_filter(workers)
    )
    return claim_update(target, is_pg)
