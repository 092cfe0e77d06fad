"""Lease holders: extend, finish and fail a claimed job.

Every state change a factory makes is fenced: a conditional UPDATE that names the lease token,
the owner and `lease_expires > now` (`statements.FENCED_*`), so a stale holder changes nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from app.db import hot
from app.db.blobs import CHUNK
from app.db.engine import Database, after_commit
from app.db.models import Result
from app.db.removal import delete_unreferenced
from app.domain.errors import BadArgument, LeaseNotHeld, NotFound
from app.domain.leases import LeasePolicy, after_lost_attempt, lease_is_live
from app.domain.matching import FORMATS
from app.domain.states import DELETED, IN_FLIGHT, JobState, require_transition
from app.services import callbacks, quarantine, result_cache
from app.services import statements as sql
from app.services.documents import store_checked
from app.services.ports import Mirror, Notifier


def _held(session: Session, now: datetime, guid: str, owner: str, token: str | None) -> Any:
    """The job's row (`statements.HELD`) if `owner` holds a live lease on it (token checked when
    given), else LeaseNotHeld. One round trip (locked FOR UPDATE on PostgreSQL)."""
    job = session.execute(sql.HELD[_is_pg(session)], {"h_guid": guid}).first()
    if job is None:
        raise NotFound(f"unknown job {guid!r}")
    _check_held(job, now, guid, owner, token)
    return job


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _check_held(job: Any, now: datetime, guid: str, owner: str, token: str | None) -> None:
    if job.state == DELETED:
        raise NotFound(f"unknown job {guid!r}")
    if (
        job.state not in IN_FLIGHT
        or job.lease_owner != owner
        or not lease_is_live(job.lease_token, job.lease_expires, token, now)
    ):
        raise LeaseNotHeld(f"lease on job {guid} is not held by {owner!r}", job_id=job.id)


def _fenced_update(session: Session, job: Any, now: datetime, stmt: Any, state: JobState, **params: object) -> None:
    """Run one of the fenced UPDATEs of `statements` (FENCED_*) on the lease `job` was read with.
    One round trip; LeaseNotHeld when the lease changed meanwhile (nothing was written)."""
    require_transition(job.state, state)
    res = session.execute(stmt, {"x_id": job.id, "x_token": job.lease_token, "x_now": now, **params})
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
    followers' release).

    Round trips on PostgreSQL: BEGIN, the job (`_held`, locked), the fenced UPDATE, COMMIT: 4."""
    job = _held(session, now, guid, owner, token)
    if job.cancel_requested:
        end_cancelled(session, now, notifier, mirror, job)
        return Extended(now, True)
    assert job.leased_at is not None
    expires = max(policy.extended_expiry(job.leased_at, now), job.lease_expires or now)
    _fenced_update(session, job, now, sql.FENCED_EXTEND, JobState.PROCESSING, x_state=int(JobState.PROCESSING), x_expires=expires)
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
    at_once: bool = True,
) -> Finished:
    """Store the result and complete the job, in the session's transaction.

    `at_once`: try `finish_at_once` first (a one-chunk result); when it writes nothing, or the result
    is larger, the general path. Round trips on PostgreSQL in a transaction, a one-chunk result with
    no callback URL, no follower, no earlier result: BEGIN, the one statement, COMMIT: 3.
    The general path (after the fast statement when it was tried: +1): the job with its lease,
    filename and an earlier result (FINISHING, one SELECT, locked on PostgreSQL); the blob row and
    its chunk (`store_checked`; n chunks: n + 2); an earlier result's DELETE and its blob's cleanup
    (a requeued job's); the result INSERT; the fenced UPDATE; the followers' SELECT (and per follower
    its UPDATE, result INSERT, callback); the success callback's INSERT when there is a URL. So 6
    statements for a one-chunk result, 7 with a success URL (+ BEGIN/COMMIT).
    Every refusal (NotFound, LeaseNotHeld, BadArgument, TooLarge) comes from the general path, in
    its order: the lease, then the format, then the document."""
    if at_once:
        one, parts = _one_chunk(parts)
        if one is not None:
            done = finish_at_once(session, now, guid=guid, owner=owner, token=token, fmt=fmt, data=one, max_bytes=max_bytes)
            if done is not None:
                return done
    return _finish_general(session, now, notifier, guid=guid, owner=owner, token=token, fmt=fmt, parts=parts, max_bytes=max_bytes)


def finish_at_once(
    session: hot.Runner, now: datetime, *, guid: str, owner: str, token: str | None, fmt: str, data: bytes, max_bytes: int
) -> Finished | None:
    """The finish of a one-chunk result whose job needs nothing else (no success URL, no waiting
    follower, no earlier result, format as asked, lease live), or None with nothing written.

    PostgreSQL: one statement (`statements.FINISH_AT_ONCE`): 1 round trip in autocommit. SQLite
    (no DML in a CTE), in the caller's write transaction: the fenced UPDATE ... RETURNING, then
    the blob, its chunk and the result: 4 statements (1 when the UPDATE matches nothing)."""
    fmt = (fmt or "").strip().lower()
    if fmt not in FORMATS or not data or len(data) > min(max_bytes, CHUNK) or not _plain(guid, owner, token):
        return None  # the general path refuses it, or stores it in chunks
    is_pg = hot.is_postgresql(session)
    params: dict[str, object] = {"a_guid": guid, "a_owner": owner, "a_now": now, "a_fmt": fmt}
    if token is not None:
        params["a_token"] = token
    rguid = str(uuid.uuid4())
    sha256 = hashlib.sha256(data).hexdigest()
    stmt = sql.FINISH_AT_ONCE[(is_pg, token is not None)]
    if is_pg:
        params.update(a_size=len(data), a_sha256=sha256, a_data=data, a_rguid=rguid, a_ext=None if fmt == "odf" else fmt)
        row = hot.first(session, stmt, params)
        return None if row is None else Finished(row.guid, row.application, row.version)
    assert isinstance(session, Session)  # SQLite: in the caller's write transaction
    job = session.execute(stmt, params).first()
    if job is None:
        return None
    blob_id = session.execute(sql.INSERT_BLOB, {"b_size": len(data), "b_sha256": sha256, "b_now": now}).scalar_one()
    session.execute(sql.INSERT_CHUNK, {"b_id": blob_id, "b_seq": 0, "b_data": data})
    filename = result_cache.result_filename(job.filename, fmt, job.doctype)
    session.execute(
        sql.INSERT_RESULT, {"r_guid": rguid, "r_job": job.id, "r_blob": blob_id, "r_fmt": fmt, "r_filename": filename, "r_now": now}
    )
    return Finished(rguid, job.application, job.version)


def _plain(*values: str | None) -> bool:
    """Arguments the fast path can bind as they are (odd text is left to the general path's checks)."""
    return all(v is None or (v.isascii() and v.isprintable()) for v in values)


def _one_chunk(parts: Iterable[bytes] | bytes) -> tuple[bytes | None, Iterable[bytes] | bytes]:
    """(the whole document, the same) when it fits in one chunk, else (None, the document's parts
    again, as a stream). A document that cannot be read (bad base64, too large) is (None, parts
    that raise that error when read): the general path reports it in its usual order, after the lease."""
    if isinstance(parts, bytes | bytearray | memoryview):
        data = bytes(parts)
        return (data if len(data) <= CHUNK else None), data
    it = iter(parts)
    buf = bytearray()
    try:
        for part in it:
            buf += part
            if len(buf) > CHUNK:
                return None, itertools.chain((bytes(buf),), it)
    except Exception as exc:  # noqa: BLE001 - raised again where the general path reads the document
        return None, _raise_when_read(exc)
    data = bytes(buf)
    return data, data


def _raise_when_read(exc: Exception) -> Iterator[bytes]:
    raise exc
    yield b""  # pragma: no cover - makes this a generator


def _finish_general(
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
    job = session.execute(sql.FINISHING[_is_pg(session)], {"f_guid": guid}).first()
    if job is None:
        raise NotFound(f"unknown job {guid!r}")
    _check_held(job, now, guid, owner, token)
    fmt = (fmt or "").strip().lower()
    if job.format and fmt != job.format:
        raise BadArgument(f"job {guid} asks for format {job.format!r}, got {fmt!r}")
    if fmt not in FORMATS:
        raise BadArgument(f"format {fmt!r} must be one of {', '.join(FORMATS)}")
    blob = store_checked(session, parts, now, max_bytes, "result")
    # An earlier attempt's result cannot exist (COMPLETE is final), but a requeued job's might.
    if job.old_result is not None:
        session.execute(delete(Result).where(Result.id == job.old_result))
        delete_unreferenced(session, [job.old_blob])  # cached results may share it
    rguid = str(uuid.uuid4())
    filename = result_cache.result_filename(job.filename, fmt, job.doctype)
    session.execute(
        sql.INSERT_RESULT, {"r_guid": rguid, "r_job": job.id, "r_blob": blob.id, "r_fmt": fmt, "r_filename": filename, "r_now": now}
    )
    _fenced_update(session, job, now, sql.FENCED_COMPLETE, JobState.COMPLETE)
    queue_callback(session, now, notifier, job.id, job.success_url, JobState.COMPLETE)
    # Looked up after the job's lock, by a statement of its own: a follower attached while this
    # waited for the lock is completed too.
    result_cache.complete_followers(session, now, notifier, job.id, Result(blob_id=blob.id, format=fmt))
    return Finished(rguid, job.application, job.version)


def finish_job(
    db: Database,
    now: datetime,
    notifier: Notifier,
    *,
    guid: str,
    owner: str,
    token: str | None,
    fmt: str,
    document: Callable[[], Iterable[bytes] | bytes],
    max_bytes: int,
) -> Finished:
    """jobs.finish for an adapter: `document()` gives the result's bytes (called again when a dead
    pooled connection makes the request run once more).

    Round trips on PostgreSQL, one pool checkout: 1 for a one-chunk result with no callback URL, no
    follower, no earlier result (`finish_at_once` in autocommit); otherwise that statement when the
    result is one chunk, then `finish`'s general path in a transaction (see there).
    SQLite: `finish` in one write transaction: BEGIN, 4 statements, COMMIT: 6."""
    one, rest = _one_chunk(document())
    pending = [rest]

    def parts() -> Iterable[bytes] | bytes:
        if one is not None:
            return one
        return pending.pop() if pending else document()  # the stream read so far, then decoded afresh

    if one is not None and not db.is_sqlite:
        done = db.hot(lambda h: finish_at_once(h, now, guid=guid, owner=owner, token=token, fmt=fmt, data=one, max_bytes=max_bytes))
        if done is not None:
            return done
    return db.run(
        lambda s: finish(
            s, now, notifier, guid=guid, owner=owner, token=token, fmt=fmt, parts=parts(), max_bytes=max_bytes, at_once=db.is_sqlite
        )
    )


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
    document (app.services.quarantine). A job its client cancelled ends FAILED "cancelled by client".

    Round trips on PostgreSQL: BEGIN, the job (`_held`, locked), the fenced UPDATE, COMMIT: 4; back
    to QUEUED the message is published after the commit; FAILED adds the failure callback's INSERT
    (with a URL) and the followers' SELECT (+ their release); `permanent` adds the strike's."""
    job = _held(session, now, guid, owner, token)
    reason = " ".join((reason or "failed").split())[:2000] or "failed"
    if job.cancel_requested:
        new, reason, permanent = JobState.FAILED, CANCELLED_BY_CLIENT, False
    elif permanent:
        new = JobState.FAILED
    else:
        new = after_lost_attempt(job.attempts, job.max_attempts)
    _fenced_update(session, job, now, sql.FENCED_END, new, x_state=int(new), x_reason=reason, x_finished=now if new.terminal else None)
    after_attempt_lost(session, now, notifier, mirror, job.id, job.application, job.version, job.failure_url, new)
    if permanent:
        quarantine.strike(session, now, notifier, job_id=job.id, factory=owner, reason=reason)
    return new


def end_cancelled(session: Session, now: datetime, notifier: Notifier | None, mirror: Mirror | None, job: Any) -> None:
    """A lease holder learns its job was cancelled: FAILED "cancelled by client", lease ended."""
    failed = JobState.FAILED
    _fenced_update(session, job, now, sql.FENCED_END, failed, x_state=int(failed), x_reason=CANCELLED_BY_CLIENT, x_finished=now)
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
