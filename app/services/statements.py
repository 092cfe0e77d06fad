"""The SQL of the job use cases, in one place: state predicates, lease fences and the statements
the claim path builds once per worker set.

The use cases (`claims`, `leases`, `client_views`, `maintenance`, `ops_views`) read as prose above
this module; a reader following `jobs.poll` from the wire ends here, at the UPDATE that claims.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    String,
    Table,
    and_,
    bindparam,
    case,
    cast,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import aliased

from app.db.blobs import CHUNK
from app.db.models import Blob, BlobChunk, ClientApplication, Content, Job, Result
from app.domain.matching import WorkerSpec
from app.domain.states import DELETABLE, DELETED, TERMINAL

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
def _best_queued_id(best, k, pair: tuple[str, str], workers: Sequence[WorkerSpec], skip_locked: bool = False):  # type: ignore[no-untyped-def]
    """The id of the head's client's best claimable job in `pair` (highest priority, then oldest), as a
    scalar subquery correlated with the head `k` (served by ix_jobs_queued_client_priority).
    `skip_locked` (PostgreSQL): the best job no other claimer holds (FOR UPDATE SKIP LOCKED)."""
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
    )
    return (best_id.with_for_update(skip_locked=True) if skip_locked else best_id).scalar_subquery()


@functools.lru_cache(maxsize=4096)
def pick_query(pair: tuple[str, str], workers: tuple[WorkerSpec, ...], is_pg: bool):  # type: ignore[no-untyped-def]
    """One read of the claim: the pair's head K (smallest tag; locked FOR UPDATE SKIP LOCKED on
    PostgreSQL) says which client is served; that client's next job J there, by (priority DESC, id)
    on ix_jobs_queued_client_priority, is handed out, with what the lease answer needs about J
    (content, blob). K's tag is the slot J takes; with one priority and no requeues J is K.

    Built once per (pair, worker set, database), like `claim_statement`: building it per claim was
    a third of a SQLite claim's CPU. The cached statement is compiled once here, under a lock, so
    that the aliases' lazily memoised column collections are complete before two threads share it."""
    with _BUILD_LOCK:
        stmt = _pick_query(pair, workers, is_pg)
        stmt.compile(dialect=_DIALECTS[is_pg])
    return stmt


_BUILD_LOCK = threading.Lock()
_DIALECTS = {True: postgresql.dialect(), False: sqlite.dialect()}


def _pick_query(pair: tuple[str, str], workers: tuple[WorkerSpec, ...], is_pg: bool):  # type: ignore[no-untyped-def]
    best = aliased(Job, name="best")  # a fresh alias per statement, see not_blocked
    head = head_query(pair, workers)
    if is_pg:
        head = head.with_for_update(skip_locked=True, of=Job)
    k = head.subquery("k")
    best_id = _best_queued_id(best, k, pair, workers)
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
    # Skipping the client's jobs other claimers hold: with many concurrent claimers of one client
    # the head k is the next unlocked job, and its client's best job is then the one just ahead,
    # held by another claimer; without the skip, every such claim answered "needs a transaction".
    best_id = _best_queued_id(best, k, pair, workers, skip_locked=True)
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


# ---------------------------------------------------------------- the lease holders' statements, built once
#
# Built at import with bound parameters and written against the tables (not the mapped classes), so
# that a request runs them as SQLAlchemy Core: no expression tree per call, no ORM bulk-update
# evaluation, no identity map. The names of the parameters are the statements' interface.

JOBS: Table = Job.__table__  # type: ignore[assignment]
_J = JOBS.c
_CLIENTS: Table = ClientApplication.__table__  # type: ignore[assignment]
# The predicates above, on the table's columns (an ORM attribute would turn a statement into an ORM one).
_IN_FLIGHT = _J.state.in_([literal_column("1"), literal_column("2")])
_QUEUED = _J.state == literal_column("0")
_NOT_FOLLOWING = _J.follows_job_id.is_(None)


# Whether one job is QUEUED and not a follower (the mirror's check of a message met at a queue's head).
QUEUED_AND_CLAIMABLE = select(_J.id).where(_J.id == bindparam("q_id"), _QUEUED, _NOT_FOLLOWING)
# Which of a list of jobs are (the mirror drain's one query per pass): on PostgreSQL the list as an
# array (a hot statement); elsewhere as an IN list, expanded per execution (in a session).
QUEUED_AMONG = select(_J.id).where(_J.id == func.any(bindparam("q_ids", type_=postgresql.ARRAY(BigInteger))), _QUEUED, _NOT_FOLLOWING)
QUEUED_AMONG_LISTED = select(_J.id).where(_J.id.in_(bindparam("q_ids", expanding=True)), _QUEUED, _NOT_FOLLOWING)


def _not_blocked():  # type: ignore[no-untyped-def]
    """`not_blocked` on the tables (see there)."""
    held_job = JOBS.alias("held")
    held = (
        select(func.count())
        .select_from(held_job)
        .where(held_job.c.client_id == _CLIENTS.c.id, held_job.c.state.in_([literal_column("1"), literal_column("2")]))
        .scalar_subquery()
    )
    blocked = select(_CLIENTS.c.id).where(_CLIENTS.c.max_in_flight.is_not(None), held >= _CLIENTS.c.max_in_flight)
    return _J.client_id.not_in(blocked)

# What a lease holder's use case reads about its job (`leases._held`): :h_guid.
_HELD_COLUMNS = (
    _J.id, _J.guid, _J.state, _J.lease_owner, _J.lease_token, _J.lease_expires, _J.leased_at, _J.cancel_requested,
    _J.attempts, _J.max_attempts, _J.application, _J.version, _J.doctype, _J.format, _J.success_url, _J.failure_url,
)
HELD = {
    False: select(*_HELD_COLUMNS).where(_J.guid == bindparam("h_guid")),
    True: select(*_HELD_COLUMNS).where(_J.guid == bindparam("h_guid")).with_for_update(),  # PostgreSQL
}


def _fenced(**values):  # type: ignore[no-untyped-def]
    """UPDATE jobs SET <values> WHERE <the lease fence>: this lease (:x_id, :x_token), still live at
    :x_now, job still in flight. The values name their own bound parameters."""
    return (
        update(JOBS)
        .where(_J.id == bindparam("x_id"), _J.lease_token == bindparam("x_token"), _J.lease_expires > bindparam("x_now"), _IN_FLIGHT)
        .values(**values)
    )


# jobs.extend: :x_state, :x_expires.
FENCED_EXTEND = _fenced(state=bindparam("x_state"), lease_expires=bindparam("x_expires"), updated_at=bindparam("x_now"))
# The lease ends without a result (jobs.fail, a cancelled job): :x_state, :x_reason, and
# :x_finished (the time a terminal state is reached; None keeps the column as it is).
FENCED_END = _fenced(
    state=bindparam("x_state"),
    lease_token=None,
    lease_expires=None,
    lease_owner=None,
    updated_at=bindparam("x_now"),
    failure_reason=bindparam("x_reason"),
    finished_at=func.coalesce(bindparam("x_finished", type_=_J.finished_at.type), _J.finished_at),
)
# jobs.finish: COMPLETE, lease ended (the owner stays recorded), finished_at for the trends.
FENCED_COMPLETE = _fenced(
    state=literal_column("3"),
    lease_token=None,
    lease_expires=None,
    updated_at=bindparam("x_now"),
    failure_reason=None,
    finished_at=bindparam("x_now"),
)

# The swap of the fair-share claim (`claims._claim_fair`): the head :sw_id takes :sw_vtag.
SWAP_VTAG = update(JOBS).where(_J.id == bindparam("sw_id"), _QUEUED).values(vtag=bindparam("sw_vtag"))


def _claim_by_id(is_pg: bool, fenced: bool, swap: bool):  # type: ignore[no-untyped-def]
    conds = [_QUEUED, _NOT_FOLLOWING, *([_not_blocked()] if fenced else [])]
    if is_pg:
        target = select(_J.id).where(_J.id == bindparam("cb_id"), *conds).with_for_update(skip_locked=True)
        stmt = update(JOBS).where(_J.id == target.scalar_subquery())
    else:
        stmt = update(JOBS).where(_J.id == bindparam("cb_id"), *conds)
    values = dict(
        state=bindparam("c_state"),
        lease_token=bindparam("c_token"),
        lease_owner=bindparam("c_owner"),
        leased_at=bindparam("c_now"),
        lease_expires=bindparam("c_expires"),
        attempts=_J.attempts + 1,
        updated_at=bindparam("c_now"),
    )
    if swap:
        values["vtag"] = bindparam("c_vtag")
    return stmt.values(**values).returning(_J.id, _J.attempts)


# UPDATE ... WHERE id = :cb_id AND state = 0 [AND the client is below its limit] RETURNING id, attempts,
# with the lease of CLAIM_PARAMS [and the head's tag :c_vtag]; keyed (is_pg, fenced, swap).
# PostgreSQL: the row is taken FOR UPDATE SKIP LOCKED, so a claim never waits for a row another
# transaction holds (waiting while holding the head's lock could close a cycle with a range
# delete); the claimer's own lock on the head does not count as held.
CLAIM_BY_ID = {(pg, fenced, swap): _claim_by_id(pg, fenced, swap) for pg in (False, True) for fenced in (False, True) for swap in (False, True)}


# ---------------------------------------------------------------- the finish

_CONTENTS: Table = Content.__table__  # type: ignore[assignment]
_RESULTS: Table = Result.__table__  # type: ignore[assignment]
_BLOBS: Table = Blob.__table__  # type: ignore[assignment]
_CHUNKS: Table = BlobChunk.__table__  # type: ignore[assignment]


def _finishing(is_pg: bool):  # type: ignore[no-untyped-def]
    q = (
        select(
            *_HELD_COLUMNS,
            _CONTENTS.c.filename,
            select(_RESULTS.c.id).where(_RESULTS.c.job_id == _J.id).limit(1).scalar_subquery().label("old_result"),
            select(_RESULTS.c.blob_id).where(_RESULTS.c.job_id == _J.id).limit(1).scalar_subquery().label("old_blob"),
        )
        .join_from(JOBS, _CONTENTS, _CONTENTS.c.id == _J.content_id)
        .where(_J.guid == bindparam("f_guid"))
    )
    return q.with_for_update(of=JOBS) if is_pg else q


# The job by GUID (:f_guid; locked FOR UPDATE on PostgreSQL) with what the general finish needs
# besides the lease: its document's filename and an earlier result (`old_result`, `old_blob`; a
# requeued job's). Keyed by is_pg. Followers are looked up by a statement of their own after the
# lock (`result_cache.complete_followers`): one committed while this waited for the lock is seen then.
FINISHING = {False: _finishing(False), True: _finishing(True)}


def _finishable(token_given: bool):  # type: ignore[no-untyped-def]
    """The finish's fast-path condition on the job :a_guid: the lease of :a_owner is live at :a_now
    (with the token :a_token when one is given), the job asks for no format or :a_fmt, no earlier
    result exists, no success callback is owed and no follower waits for it."""
    follower = JOBS.alias("follower")
    conds = [
        _J.guid == bindparam("a_guid"),
        _IN_FLIGHT,
        _J.lease_owner == bindparam("a_owner"),
        _J.lease_token.is_not(None),
        _J.lease_expires > bindparam("a_now"),
        or_(_J.format == "", _J.format == bindparam("a_fmt")),
        or_(_J.success_url.is_(None), _J.success_url == ""),
        ~select(_RESULTS.c.id).where(_RESULTS.c.job_id == _J.id).exists(),
        ~select(follower.c.id).where(follower.c.follows_job_id == _J.id, follower.c.state == literal_column("0")).exists(),
    ]
    if token_given:
        conds.append(_J.lease_token == bindparam("a_token"))
    return conds


_COMPLETE_VALUES: dict[str, Any] = dict(
    state=literal_column("3"),
    lease_token=None,
    lease_expires=None,
    updated_at=bindparam("a_now"),
    failure_reason=None,
    finished_at=bindparam("a_now"),
)


def _finish_at_once_pg(token_given: bool):  # type: ignore[no-untyped-def]
    """PostgreSQL: the whole finish of a one-chunk result as one statement (autocommit: 1 round trip).

        WITH u AS (UPDATE jobs SET <COMPLETE, lease ended> WHERE id = (the job, if finishable,
                   FOR UPDATE SKIP LOCKED) RETURNING ...),
             b AS (INSERT INTO blobs SELECT :a_size, :a_sha256, :a_now FROM u RETURNING id),
             c AS (INSERT INTO blob_chunks SELECT b.id, 0, :a_data FROM b RETURNING blob_id),
             r AS (INSERT INTO results SELECT :a_rguid, u.id, b.id, :a_fmt, <filename>, :a_now FROM u, b, contents RETURNING guid)
        SELECT u.application, u.version, r.guid, (SELECT count(*) FROM c) FROM u, r

    No row: nothing was written (not finishable at once); the caller takes the general path.
    SKIP LOCKED: a job another transaction holds (a submission attaching a follower holds it FOR
    SHARE) is left to the general path, which waits for it and then sees what it committed. Not
    covered: a follower committed in the instant between this statement's snapshot and its row
    lock (READ COMMITTED reads the followers with the snapshot); closing that needs a mark on the
    leader's own row that the UPDATE's recheck would see.
    The result's filename is the document's without its last extension, plus the format's
    extension (:a_ext; NULL for odf, which takes the job's doctype): `result_cache.result_filename`."""
    target = select(_J.id).where(*_finishable(token_given)).with_for_update(skip_locked=True).scalar_subquery()
    u = (
        update(JOBS)
        .where(_J.id == target, _IN_FLIGHT)
        .values(**_COMPLETE_VALUES)
        .returning(_J.id, _J.application, _J.version, _J.doctype, _J.content_id)
        .cte("u")
    )
    now = bindparam("a_now", type_=_J.updated_at.type)
    b = (
        insert(_BLOBS)
        .from_select(
            ["size", "sha256", "created_at"],
            select(bindparam("a_size", type_=_BLOBS.c.size.type), bindparam("a_sha256", type_=_BLOBS.c.sha256.type), now).select_from(u),
        )
        .returning(_BLOBS.c.id)
        .cte("b")
    )
    c = (
        insert(_CHUNKS)
        .from_select(
            ["blob_id", "seq", "data"],
            select(b.c.id, literal(0, _CHUNKS.c.seq.type), bindparam("a_data", type_=_CHUNKS.c.data.type)),
        )
        .returning(_CHUNKS.c.blob_id)
        .cte("c")
    )
    stem = func.regexp_replace(func.coalesce(func.nullif(_CONTENTS.c.filename, ""), "document"), r"\.[^.]*$", "")
    ext = func.coalesce(bindparam("a_ext", type_=_RESULTS.c.format.type), u.c.doctype)
    r = (
        insert(_RESULTS)
        .from_select(
            ["guid", "job_id", "blob_id", "format", "filename", "created_at"],
            select(
                bindparam("a_rguid", type_=_RESULTS.c.guid.type), u.c.id, b.c.id, bindparam("a_fmt", type_=_RESULTS.c.format.type),
                stem + "." + ext, now,
            )
            .select_from(u)
            .join(b, literal(True))
            .join(_CONTENTS, _CONTENTS.c.id == u.c.content_id),
        )
        .returning(_RESULTS.c.guid)
        .cte("r")
    )
    return select(
        u.c.application, u.c.version, r.c.guid, select(func.count()).select_from(c).scalar_subquery().label("chunks")
    ).select_from(u).join(r, literal(True))


def _finish_at_once_sqlite(token_given: bool):  # type: ignore[no-untyped-def]
    """SQLite (no DML in a CTE): the fenced UPDATE of the fast path, returning what the inserts need."""
    return (
        update(JOBS)
        .where(*_finishable(token_given))
        .values(**_COMPLETE_VALUES)
        .returning(
            _J.id, _J.application, _J.version, _J.doctype,
            select(_CONTENTS.c.filename).where(_CONTENTS.c.id == _J.content_id).scalar_subquery().label("filename"),
        )
    )


# Keyed (is_pg, token_given).
FINISH_AT_ONCE = {(pg, t): (_finish_at_once_pg(t) if pg else _finish_at_once_sqlite(t)) for pg in (False, True) for t in (False, True)}
# One-chunk documents, stored with their size and hash (SQLite's fast path, and any one-chunk store).
INSERT_BLOB = insert(_BLOBS).values(size=bindparam("b_size"), sha256=bindparam("b_sha256"), created_at=bindparam("b_now")).returning(_BLOBS.c.id)
INSERT_CHUNK = insert(_CHUNKS).values(blob_id=bindparam("b_id"), seq=bindparam("b_seq"), data=bindparam("b_data"))
INSERT_RESULT = insert(_RESULTS).values(
    guid=bindparam("r_guid"), job_id=bindparam("r_job"), blob_id=bindparam("r_blob"), format=bindparam("r_fmt"),
    filename=bindparam("r_filename"), created_at=bindparam("r_now"),
)
