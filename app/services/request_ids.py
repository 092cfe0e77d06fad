"""Client request ids [ext]: a contentUpload or contentConvert retried with the same requestId
answers the first call's result and creates nothing.

The id is claimed (a row keyed (client, operation, requestId)) in the transaction that creates the
upload or the job, before the creation itself: a concurrent duplicate waits on that row's key
(PostgreSQL) or on the write lock (SQLite), then finds the committed answer. A failed call leaves
no row, so its retry runs again. The same id with a different request is refused
(`RequestIdReused`). Rows expire with retention (`maintenance.retention_purge`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.engine import Database
from app.db.models import RequestId
from app.domain.errors import BadArgument, RequestIdReused, Unavailable

MAX_CHARS = 100
# A duplicate that lost the race on the key retries once to read the winner's answer; more rounds
# only happen when the winner rolled back in between.
ATTEMPTS = 3


def clean(value: str | None) -> str | None:
    """The requestId as stored, or None when absent or empty; BadArgument when unusable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if len(value) > MAX_CHARS:
        raise BadArgument(f"requestId must be at most {MAX_CHARS} characters")
    if not value.isprintable():
        raise BadArgument("requestId must be printable text")
    return value


def fingerprint(operation: str, *fields: object) -> str:
    """sha256 of an operation's request fields (a document is given as the sha256 of its bytes)."""
    text = json.dumps([operation, *fields], default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def once(
    db: Database,
    now: datetime,
    *,
    client_id: int,
    operation: str,
    request_id: str | None,
    fingerprint: Callable[[], str],
    create: Callable[[Session], object],
) -> str:
    """Run `create` in a write transaction and return its answer (as text), once per request id.

    Without a request id, `create` simply runs. With one, a stored answer for (client, operation,
    request id) is returned instead when the fingerprint matches, and RequestIdReused is raised when
    it does not. `fingerprint` is called once, before any transaction.
    """
    if request_id is None:
        with db.session() as s:
            return str(create(s))
    digest = fingerprint()
    for _ in range(ATTEMPTS):
        try:
            with db.session() as s:
                found = s.get(RequestId, (client_id, operation, request_id))
                if found is not None:
                    if found.fingerprint != digest:
                        raise RequestIdReused(
                            f"requestId {request_id!r} was already used for a different {operation} request"
                        )
                    return found.answer
                row = RequestId(
                    client_id=client_id, operation=operation, request_id=request_id, fingerprint=digest, answer="", created_at=now
                )
                s.add(row)
                s.flush()  # the claim: a concurrent duplicate blocks here until this transaction ends
                row.answer = str(create(s))
                return row.answer
        except IntegrityError:
            continue  # a duplicate committed first: the next round reads its answer
    raise Unavailable("requestId is being used by a concurrent request; try again")


def expire(session: Session, before: datetime) -> int:
    """Forget request ids created before `before` (retention)."""
    res = session.execute(delete(RequestId).where(RequestId.created_at < before).execution_options(synchronize_session=False))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]
