"""Client submissions: upload a document, then queue its conversion.

`submit` is the one way a conversion is queued (SOAP contentConvert and `convhub jobs submit`):
the same argument rules and the same "some enabled registered factory serves this" rule.
The job's message is published to the mirror only after the commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.engine import after_commit
from app.db.models import Content, Job
from app.domain.errors import BadArgument, NotFound, NotOwner, NotServed
from app.domain.matching import DOCTYPES, FORMATS, WorkerSpec, doctype_of, matching_workers, validate_pages
from app.domain.states import JobState
from app.services import admin, callbacks, counters, quarantine, result_cache
from app.services.documents import check_size, store_checked
from app.services.ports import Mirror, Notifier


def upload(
    session: Session, now: datetime, *, client_id: int, filename: str, parts: Iterable[bytes] | bytes, max_bytes: int
) -> Content:
    """Store an uploaded ODF document; its doctype comes from the file name.

    A document whose size is known up front (bytes, or a list of chunks) is refused before any
    byte is stored; a stream is measured as it is stored (the transaction then stores nothing)."""
    if isinstance(parts, bytes | bytearray):
        check_size(len(parts), max_bytes)
    elif isinstance(parts, list | tuple):
        check_size(sum(len(p) for p in parts), max_bytes)
    filename = (filename or "").strip()
    doctype = doctype_of(filename)
    if doctype is None:
        raise BadArgument(f"filename {filename!r} must end in one of: {', '.join('.' + d for d in DOCTYPES)}")
    blob = store_checked(session, parts, now, max_bytes, "document")
    content = Content(
        identifier=str(uuid.uuid4()), client_id=client_id, blob_id=blob.id, filename=filename[:500], doctype=doctype, created_at=now
    )
    session.add(content)
    session.flush()
    return content


def find_content(session: Session, client_id: int, identifier: str) -> Content:
    content = session.scalar(select(Content).where(Content.identifier == identifier))
    if content is None:
        raise NotFound(f"unknown content identifier {identifier!r}")
    if content.client_id != client_id:
        raise NotOwner("the content belongs to another client application")
    return content


def require_served(served: Sequence[WorkerSpec], application: str, version: str, doctype: str, fmt: str) -> None:
    """NotServed unless some enabled registered factory converts `doctype` to `fmt` for the pair."""
    if matching_workers(served, application, version, doctype, fmt):
        return
    pair = [w for w in served if w.pair == (application, version)]
    if not pair:
        raise NotServed(f"no registered factory serves {application!r} version {version!r}")
    if doctype not in pair[0].doctypes:
        raise NotServed(f"{application} {version} does not convert {doctype} documents")
    raise NotServed(f"{application} {version} does not produce format {fmt!r}")


def convert(
    session: Session,
    now: datetime,
    mirror: Mirror,
    *,
    client_id: int,
    identifier: str,
    application: str,
    version: str,
    fmt: str = "",
    page_start: int = 1,
    page_end: int = 0,
    max_attempts: int = 3,
    success_url: str | None = None,
    failure_url: str | None = None,
    allow_private_callbacks: bool = False,
    no_cache: bool = False,
    notifier: Notifier | None = None,
    share_across_clients: bool = False,
) -> Job:
    """SOAP contentConvert: check the callback URLs, find the client's upload, then `submit` it."""
    for url in (success_url, failure_url):
        if url:
            callbacks.check_url(url, allow_private=allow_private_callbacks)
    try:
        content = find_content(session, client_id, identifier or "")
    except (NotFound, NotOwner):
        # Another client's upload is reported exactly like an unknown one.
        raise BadArgument(f"unknown contentIdentifier {identifier!r}") from None
    return submit(
        session, now, mirror, client_id=client_id, content=content, application=application, version=version,
        fmt=fmt, page_start=page_start, page_end=page_end, max_attempts=max_attempts,
        success_url=success_url, failure_url=failure_url,
        no_cache=no_cache, notifier=notifier, share_across_clients=share_across_clients,
    )


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
    no_cache: bool = False,
    notifier: Notifier | None = None,
    share_across_clients: bool = False,
) -> Job:
    """Queue a conversion an enabled registered factory serves (NotServed otherwise).

    A quarantined document is refused (Quarantined). Unless `no_cache`, the result cache is asked
    first (app.services.result_cache): a COMPLETE job with the same key completes this one at once
    (nothing is published), a QUEUED or in-flight one is followed (nothing is published either)."""
    application, version, fmt = (application or "").strip(), (version or "").strip(), (fmt or "").strip().lower()
    require_served(admin.served_targets(session), application, version, content.doctype, fmt)
    sha = result_cache.content_sha256(session, content)
    quarantine.check(session, sha)
    job = new_job(
        client_id=client_id, content=content, application=application, version=version,
        fmt=fmt, page_start=page_start, page_end=page_end, max_attempts=max_attempts,
        success_url=success_url, failure_url=failure_url, now=now,
    )
    job.cache_key = result_cache.cache_key(sha, job.application, job.version, job.format, job.page_start, job.page_end)
    hit = None if no_cache else result_cache.lookup(session, job.cache_key, client_id, across_clients=share_across_clients)
    if hit is not None and not hit.complete:
        job.follows_job_id = hit.leader_id
    session.add(job)
    session.flush()
    if hit is None:
        _publish(session, mirror, job)
    elif hit.complete:
        result_cache.complete_from_cache(session, now, notifier, job, hit, content.filename)
        counters.bump(session, counters.CACHE_HITS)
    else:
        counters.bump(session, counters.CACHE_FOLLOWS)
    return job


def enqueue(
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
    """Insert the QUEUED job and publish its message after the commit, with the argument rules
    but no rule about factories (`submit` adds it; seeding tools and tests call this directly)."""
    job = new_job(
        client_id=client_id, content=content, application=application, version=version, fmt=fmt, page_start=page_start,
        page_end=page_end, max_attempts=max_attempts, success_url=success_url, failure_url=failure_url, now=now,
    )
    # Recorded so that a later submission may share this job's result.
    job.cache_key = result_cache.cache_key(
        result_cache.content_sha256(session, content), job.application, job.version, job.format, job.page_start, job.page_end
    )
    session.add(job)
    session.flush()
    _publish(session, mirror, job)
    return job


def _publish(session: Session, mirror: Mirror, job: Job) -> None:
    job_id, application, version = job.id, job.application, job.version
    after_commit(session, lambda: mirror.publish(job_id, application, version))


def new_job(
    *,
    client_id: int,
    content: Content,
    application: str,
    version: str,
    fmt: str,
    page_start: int,
    page_end: int,
    max_attempts: int,
    success_url: str | None,
    failure_url: str | None,
    now: datetime,
) -> Job:
    """A QUEUED job (not added to the session) after the argument rules."""
    application, version, fmt = application.strip(), version.strip(), (fmt or "").strip().lower()
    if not application or not version:
        raise BadArgument("application and version are required")
    if fmt and fmt not in FORMATS:
        raise BadArgument(f"format {fmt!r} must be one of {', '.join(FORMATS)} or empty")
    try:
        validate_pages(page_start, page_end)
    except ValueError as exc:
        raise BadArgument(str(exc)) from None
    return Job(
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
        cancel_requested=False,
    )
