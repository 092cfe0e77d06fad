"""Claims: hand the next acceptable QUEUED job in fair-share order to a factory under a new lease.

`probe` reads (no write, no scan); `claim` is one read and one conditional UPDATE per pair tried. The statements
are built once per worker set in `app.services.statements`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import hot
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
    # The document itself when it is one chunk and the claim read it in the same statement.
    document: bytes | None = None


def probe(on: hot.Runner, workers: Sequence[WorkerSpec]) -> list[tuple[tuple[float, int], tuple[str, str]]]:
    """Read-only: the head (smallest fair-share tag) of every pair, smallest first. No write, no scan.
    `on`: a session's transaction, or a hot connection (the poll's).

    Round trips: one (a UNION ALL of per-pair LIMIT 1 index walks)."""
    if not workers:
        return []
    pairs, q = sql.probe_query(tuple(workers))
    found = [((row.vtag, row.id), pairs[row.pair]) for row in hot.rows(on, q)]
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
    """Atomically move the next QUEUED job in fair-share order to REQUESTED_FOR_PROCESSING under a new lease.

    Fair share (docs/operations.md, "Fair share and quotas"): the head of a pair is the job with the
    smallest virtual-time tag and says which client is served; that client's next job there (highest
    priority, then oldest) is the one handed out, and the two swap tags, so priority reorders a
    client's own jobs and never changes its share.
    PostgreSQL: the head is locked FOR UPDATE SKIP LOCKED, so concurrent claimers take different
    rows. SQLite: the UPDATE runs under the database write lock (BEGIN IMMEDIATE), so the
    `state = 0` condition is checked and set atomically.
    `job_id` claims that job only (push-style Celery factories, which hold its message; the broker's
    order applies there).
    """
    by_pair = sql.by_pair(workers)
    if pairs is not None:
        order = list(pairs)
    elif job_id is None and len(by_pair) > 1:
        order = [p for _, p in probe(session, workers)]  # smallest tag first across pairs
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
    lease = {"c_state": values["state"], "c_token": token, "c_owner": owner, "c_now": now, "c_expires": expires}
    for pair in order:
        ws = by_pair.get(pair)
        if not ws:
            continue
        if job_id is not None:
            claimed = _claim_job(session, sql.job_claim_update(job_id, pair, ws, is_pg).values(**values), token, expires)
        else:
            claimed = _claim_fair(session, pair, ws, is_pg, lease, token, expires)
        if claimed is not None:
            return claimed
    return None


class NeedsTransaction:
    """`claim_at_once` found a head it could not claim in one statement (see `statements.claim_statement`)."""


NEEDS_TRANSACTION = NeedsTransaction()


def claim_at_once(
    on: hot.Runner, now: datetime, policy: LeasePolicy, *, owner: str, workers: Sequence[WorkerSpec], pairs: Sequence[tuple[str, str]]
) -> Claimed | NeedsTransaction | None:
    """PostgreSQL, autocommit (`on`: a hot connection, or an autocommit session): the claim as one statement per pair tried, the document included when
    it is one chunk. Round trips: 1 per pair tried (the first pair with a head, as a rule).

    Same order and rules as `claim` (fair share, priority, followers never claimed). A head whose
    client has an in-flight limit (or whose job another claimer took) answers NEEDS_TRANSACTION:
    the caller then runs `claim` in a transaction."""
    by_pair = sql.by_pair(workers)
    token = policy.new_token()
    expires = policy.grant_expiry(now)
    params = {"c_state": int(JobState.REQUESTED_FOR_PROCESSING), "c_token": token, "c_owner": owner, "c_now": now, "c_expires": expires}
    for pair in pairs:
        ws = by_pair.get(pair)
        if not ws:
            continue
        row = hot.first(on, sql.claim_statement(pair, ws), params)
        if row is None:
            continue  # nothing claimable there (any more)
        if row.id is None:
            return NEEDS_TRANSACTION
        return Claimed(
            id=row.id, guid=row.guid, application=row.application, version=row.version, doctype=row.doctype,
            format=row.format, page_start=row.page_start, page_end=row.page_end, filename=row.filename,
            blob_id=row.blob_id, size=row.size, lease_token=token, lease_expires=expires, attempt=row.attempts,
            document=None if row.data is None else bytes(row.data),
        )
    return None


def _claim_fair(
    session: Session,
    pair: tuple[str, str],
    workers: tuple[WorkerSpec, ...],
    is_pg: bool,
    lease: dict[str, object],
    token: str,
    expires: datetime,
) -> Claimed | None:
    """Claim in one pair. Round trips: 2 (the pick read, the claim UPDATE); +1 on PostgreSQL when the
    client has an in-flight limit (its row is locked so concurrent claims cannot pass the limit
    together); +1 when a higher-priority job takes the head's tag (the head gets the job's tag)."""
    row = session.execute(sql.pick_query(pair, workers, is_pg)).first()
    if row is None:
        return None
    job: Job = row.Job
    limited = row.max_in_flight is not None
    if limited and is_pg:
        session.execute(sql.lock_client(job.client_id))
    swap = job.id != row.k_id
    chosen_vtag = job.vtag
    got = session.execute(sql.CLAIM_BY_ID[(is_pg, limited, swap)], {"cb_id": job.id, **lease, **({"c_vtag": row.k_vtag} if swap else {})}).first()
    if got is None and swap:
        # The client's best job went to another claimer meanwhile: hand out the head itself.
        swap = False
        got = session.execute(sql.CLAIM_BY_ID[(is_pg, limited, False)], {"cb_id": row.k_id, **lease}).first()
        if got is not None:
            return _claimed_by_id(session, got.id, token, expires)
    if got is None:
        return None
    if swap:
        session.execute(sql.SWAP_VTAG, {"sw_id": row.k_id, "sw_vtag": chosen_vtag})
    return _claimed(job, row.filename, row.blob_id, row.size, token, expires, attempt=got.attempts,
                    document=None if row.data is None else bytes(row.data))


def _claim_job(session: Session, stmt, token: str, expires: datetime) -> Claimed | None:  # type: ignore[no-untyped-def]
    claimed_id = session.execute(stmt).scalar()
    if claimed_id is None:
        return None
    return _claimed_by_id(session, claimed_id, token, expires)


def _claimed_by_id(session: Session, claimed_id: int, token: str, expires: datetime) -> Claimed:
    job, filename, blob_id, size = session.execute(
        select(Job, Content.filename, Content.blob_id, Blob.size)
        .join(Content, Content.id == Job.content_id)
        .join(Blob, Blob.id == Content.blob_id)
        .where(Job.id == claimed_id)
        .execution_options(populate_existing=True)
    ).one()
    return _claimed(job, filename, blob_id, size, token, expires, attempt=job.attempts)


def _claimed(job: Job, filename: str, blob_id: int, size: int, token: str, expires: datetime, *,
             attempt: int, document: bytes | None = None) -> Claimed:
    """The claim's answer: the job's fields, its document's, and the lease just granted."""
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
        attempt=attempt,
        document=document,
    )


def is_queued(on: hot.Runner, job_id: int) -> bool:
    """Whether the job is still QUEUED and claimable (the mirror drops messages of jobs that are not).
    `on`: a session's transaction, or a hot connection (a claim's mirror removal: one round trip).
    A follower of a cached conversion is QUEUED but never claimed: its message is stale too."""
    return hot.first(on, sql.QUEUED_AND_CLAIMABLE, {"q_id": job_id}) is not None


def queued_among(on: hot.Runner, job_ids: Sequence[int]) -> set[int]:
    """Which of these jobs are still QUEUED and claimable: one statement (on PostgreSQL an array
    parameter, so it runs on a hot connection too; on SQLite an IN list, in a session)."""
    if not job_ids:
        return set()
    if hot.is_postgresql(on):
        return {row.id for row in hot.rows(on, sql.QUEUED_AMONG, {"q_ids": list(job_ids)})}
    assert isinstance(on, Session)
    return set(on.scalars(sql.QUEUED_AMONG_LISTED, {"q_ids": list(job_ids)}))
