"""Client submissions: upload a document, then queue its conversion.

`submit` is the one way a conversion is queued (SOAP contentConvert and `convhub jobs submit`):
the same argument rules and the same "some enabled registered factory serves this" rule.
The job's message is published to the mirror only after the commit.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import case, func, insert, select, update
from sqlalchemy.orm import Session

from app.db.engine import after_commit
from app.db.models import ClientApplication, Content, Job
from app.domain.errors import BadArgument, ClientQueueFull, NotFound, NotOwner, NotServed
from app.domain.matching import DOCTYPES, FORMATS, WorkerSpec, doctype_of, matching_workers, validate_pages
from app.domain.states import JobState
from app.services import admin, callbacks, counters, quarantine, result_cache
from app.services.documents import check_size, store_checked
from app.services.ports import Mirror, Notifier
from app.services.statements import IS_QUEUED

DEFAULT_PRIORITY = 5
DEFAULT_MAX_QUEUED = 10_000
# How far back a client's completions are counted to estimate when its queue has room again.
RATE_WINDOW = timedelta(minutes=5)
DEFAULT_RETRY_AFTER = 60  # seconds, when the client completed nothing in the window
MAX_RETRY_AFTER = 3600



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
    priority: int | None = None,
    default_max_queued: int = DEFAULT_MAX_QUEUED,
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
        success_url=success_url, failure_url=failure_url, priority=priority, default_max_queued=default_max_queued,
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
    priority: int | None = None,
    default_max_queued: int = DEFAULT_MAX_QUEUED,
) -> Job:
    """Queue a conversion an enabled registered factory serves (NotServed otherwise).

    A quarantined document is refused (Quarantined). Unless `no_cache`, the result cache is asked
    first (app.services.result_cache): a COMPLETE job with the same key completes this one at once
    (nothing is published), a QUEUED or in-flight one is followed (nothing is published either).
    A job left QUEUED must fit the client's queue quota (ClientQueueFull otherwise: the caller's
    transaction then stores nothing)."""
    application, version, fmt = (application or "").strip(), (version or "").strip(), (fmt or "").strip().lower()
    require_served(admin.served_targets(session), application, version, content.doctype, fmt)
    sha = result_cache.content_sha256(session, content)
    quarantine.check(session, sha)
    job = new_job(
        session, client_id=client_id, content=content, application=application, version=version,
        fmt=fmt, page_start=page_start, page_end=page_end, max_attempts=max_attempts,
        success_url=success_url, failure_url=failure_url, priority=priority, now=now,
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
    if hit is None or not hit.complete:  # left QUEUED (a follower too)
        check_quota(session, now, client_id, default_max_queued)
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
    priority: int | None = None,
) -> Job:
    """Insert the QUEUED job and publish its message after the commit, with the argument rules
    but no rule about factories (`submit` adds it; seeding tools and tests call this directly)."""
    job = new_job(
        session, client_id=client_id, content=content, application=application, version=version, fmt=fmt,
        page_start=page_start, page_end=page_end, max_attempts=max_attempts, success_url=success_url,
        failure_url=failure_url, now=now, priority=priority,
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
    session: Session,
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
    priority: int | None = None,
) -> Job:
    """A QUEUED job (not added to the session) after the argument rules, with its fair-share tag
    (app.services.submission.fair_tag: this moves the client's virtual time on)."""
    application, version, fmt = application.strip(), version.strip(), (fmt or "").strip().lower()
    if not application or not version:
        raise BadArgument("application and version are required")
    if fmt and fmt not in FORMATS:
        raise BadArgument(f"format {fmt!r} must be one of {', '.join(FORMATS)} or empty")
    try:
        validate_pages(page_start, page_end)
    except ValueError as exc:
        raise BadArgument(str(exc)) from None
    priority = DEFAULT_PRIORITY if priority is None else priority
    if not 0 <= priority <= 9:
        raise BadArgument(f"priority {priority} must be between 0 and 9")
    vtag = fair_tag(session, client_id)
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
        priority=priority,
        vtag=vtag,
    )


# ---------------------------------------------------------------- farm policy: fair share and quotas

def virtual_time(session: Session) -> float:
    """The system's virtual time V: the smallest tag in the backlog (one probe of
    ix_jobs_queued_min_vtag); with an empty backlog, the largest virtual time any client reached
    (one probe of ix_client_applications_vtime). Every tag handed out so far is <= that, so a client
    that was idle starts level with the others and cannot bank credit."""
    v = session.scalar(select(func.min(Job.vtag)).where(IS_QUEUED))
    if v is None:
        v = session.scalar(select(func.max(ClientApplication.vtime)))
    return float(v or 0.0)


def fair_tag(session: Session, client_id: int, count: int = 1) -> float:
    """A new job's virtual-time (start) tag: max(client's vtime, V); the client's vtime moves on by
    count/weight (its next start). With `count` > 1 the jobs' tags are tag + i/weight, i < count.

    Round trips: 2 (V; the UPDATE ... RETURNING, which also locks the client's row until the commit,
    so concurrent submissions of one client get distinct, increasing tags and the quota count that
    follows sees them all). A client alone gets strictly increasing tags: oldest first, as before;
    an idle client starts at V, level with the others (start-time fair queuing)."""
    v = virtual_time(session)
    row = session.execute(
        update(ClientApplication)
        .where(ClientApplication.id == client_id)
        .values(vtime=case((ClientApplication.vtime > v, ClientApplication.vtime), else_=v) + float(count) / ClientApplication.weight)
        .returning(ClientApplication.vtime, ClientApplication.weight)
        .execution_options(synchronize_session=False)
    ).first()
    if row is None:
        raise NotFound(f"no client application {client_id}")
    return float(row.vtime) - float(count) / row.weight


def enqueue_batch(
    session: Session,
    now: datetime,
    mirror: Mirror,
    *,
    client_id: int,
    content: Content,
    application: str,
    version: str,
    count: int,
    fmt: str = "",
    priority: int | None = None,
    max_attempts: int = 3,
) -> list[int]:
    """`count` identical QUEUED jobs in one multi-row INSERT (seeding tools, benchmarks, tests):
    the argument rules and fair-share tags of `enqueue`, no factory rule, no quota. Returns the ids."""
    application, version, fmt = application.strip(), version.strip(), (fmt or "").strip().lower()
    if not application or not version or count < 1:
        raise BadArgument("application, version and a positive count are required")
    if fmt and fmt not in FORMATS:
        raise BadArgument(f"format {fmt!r} must be one of {', '.join(FORMATS)} or empty")
    priority = DEFAULT_PRIORITY if priority is None else priority
    if not 0 <= priority <= 9:
        raise BadArgument(f"priority {priority} must be between 0 and 9")
    weight = session.scalar(select(ClientApplication.weight).where(ClientApplication.id == client_id)) or 1
    start = fair_tag(session, client_id, count)
    rows = [
        dict(
            guid=str(uuid.uuid4()), client_id=client_id, content_id=content.id, application=application, version=version,
            doctype=content.doctype, format=fmt, page_start=1, page_end=0, state=int(JobState.QUEUED), submitted_at=now,
            updated_at=now, attempts=0, max_attempts=max_attempts, priority=priority, vtag=start + i / weight,
        )
        for i in range(count)
    ]
    guids = [r["guid"] for r in rows]
    for i in range(0, count, 1000):
        session.execute(insert(Job), rows[i : i + 1000])
    ids: list[int] = []
    for i in range(0, count, 1000):
        ids += session.scalars(select(Job.id).where(Job.guid.in_(guids[i : i + 1000])).order_by(Job.id)).all()

    def publish() -> None:
        for job_id in ids:
            mirror.publish(job_id, application, version)

    after_commit(session, publish)
    return ids


def check_quota(session: Session, now: datetime, client_id: int, default_max_queued: int) -> None:
    """ClientQueueFull (SOAP 540) when the client has more QUEUED jobs than its `max_queued`
    (NULL = `default_max_queued`, the setting CONVHUB_CLIENT_MAX_QUEUED). Runs after the job's
    flush, under the client's row lock taken by `fair_tag`: one count on ix_jobs_client_state_id."""
    limit = session.scalar(select(ClientApplication.max_queued).where(ClientApplication.id == client_id))
    limit = default_max_queued if limit is None else limit
    queued = session.scalar(select(func.count()).select_from(Job).where(Job.client_id == client_id, Job.state == 0)) or 0
    if queued <= limit:
        return
    raise ClientQueueFull(
        f"the client application has {queued - 1} jobs queued, its limit is {limit}; retry later",
        retryAfterSeconds=retry_after(session, now, client_id, queued - limit),
    )


def retry_after(session: Session, now: datetime, client_id: int, excess: int) -> int:
    """Seconds until `excess` of the client's queued jobs have likely ended, from its completions
    over the last RATE_WINDOW; DEFAULT_RETRY_AFTER when it completed none; at most MAX_RETRY_AFTER."""
    done = session.scalar(
        select(func.count())
        .select_from(Job)
        .where(Job.finished_at >= now - RATE_WINDOW, Job.client_id == client_id, Job.state == int(JobState.COMPLETE))
    ) or 0
    if done == 0:
        return DEFAULT_RETRY_AFTER
    per_second = done / RATE_WINDOW.total_seconds()
    return max(1, min(MAX_RETRY_AFTER, math.ceil(excess / per_second)))
