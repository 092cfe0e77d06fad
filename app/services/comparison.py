"""Rendering comparison: one document, every application that serves it, side by side.

- `convert_all` (SOAP contentConvertAll): one ordinary job per served (application, version) that
  converts the document's doctype to the format, each through `submission.submit` (quarantine,
  result cache and quotas apply), plus the comparison row that groups them.
- `due` (beat, every few seconds): the comparisons whose jobs have all ended, to hand to the
  comparison task. The database is the authority: whatever ended a job (finish, fail, lease reclaim,
  cancellation, quarantine, a cached result, a client's delete), the next sweep sees it, and a task
  message lost with the broker is sent again (`RESEND_AFTER`).
- `run` (the comparison task): rasterize, align, score, store. The only place pixels are touched.
- `view`, `page_png`, `diff_png`, `for_job`: what SOAP getContentComparison and the ops page read.
- `purge_expired` (beat, with retention): comparisons older than the retention period.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.db.blobs import read_blob, store_blob
from app.db.engine import Database
from app.db.models import Comparison, ComparisonJob, ComparisonPage, ComparisonScore, Job, Result
from app.db.removal import remove_comparisons
from app.domain import comparison as rules
from app.domain.comparison import ComparisonState
from app.domain.errors import BadArgument, NotFound, NotOwner, NotServed
from app.domain.matching import FORMATS
from app.domain.states import DELETED, TERMINAL, JobState
from app.services import admin, submission
from app.services.ports import Mirror, Notifier

log = logging.getLogger("convhub.comparison")

COMPARABLE = ("pdf", "png")  # formats whose results have pages to compare
RESEND_AFTER = timedelta(minutes=2)  # a sent task not started by then is sent again
STALE_RUN = timedelta(minutes=15)  # a task that took a comparison and died: taken again after this
DUE_BATCH = 50


@dataclass(frozen=True)
class Submitted:
    comparison_id: int
    job_ids: tuple[int, ...]
    targets: tuple[tuple[str, str], ...]  # (application, version) of each job, same order


def convert_all(
    session: Session,
    now: datetime,
    mirror: Mirror,
    *,
    client_id: int,
    identifier: str,
    fmt: str = "pdf",
    page_start: int = 1,
    page_end: int = 0,
    max_attempts: int = 3,
    notifier: Notifier | None = None,
    share_across_clients: bool = False,
) -> Submitted:
    """Queue one job per served (application, version) that converts the document to `fmt`."""
    fmt = (fmt or "pdf").strip().lower()
    if fmt not in FORMATS:
        raise BadArgument(f"format {fmt!r} must be one of {', '.join(FORMATS)}")
    if fmt not in COMPARABLE:
        raise BadArgument(f"renderings are compared as {' or '.join(COMPARABLE)}, not {fmt!r}")
    try:
        content = submission.find_content(session, client_id, identifier or "")
    except (NotFound, NotOwner):
        raise BadArgument(f"unknown contentIdentifier {identifier!r}") from None
    targets = sorted(
        {(w.application, w.version) for w in admin.served_targets(session) if content.doctype in w.doctypes and fmt in w.formats}
    )
    if not targets:
        raise NotServed(f"no registered factory converts {content.doctype} documents to {fmt}")
    comparison = Comparison(
        client_id=client_id, filename=content.filename, format=fmt, state=int(ComparisonState.WAITING), created_at=now, dpi=rules.DPI
    )
    session.add(comparison)
    session.flush()
    job_ids = []
    for position, (application, version) in enumerate(targets):
        job = submission.submit(
            session, now, mirror, client_id=client_id, content=content, application=application, version=version,
            fmt=fmt, page_start=page_start, page_end=page_end, max_attempts=max_attempts,
            notifier=notifier, share_across_clients=share_across_clients,
        )
        session.add(ComparisonJob(comparison_id=comparison.id, position=position, job_id=job.id, application=application, version=version))
        job_ids.append(int(job.id))
    session.flush()
    return Submitted(int(comparison.id), tuple(job_ids), tuple(targets))


# ---------------------------------------------------------------- beat: which comparisons are due


def due(session: Session, now: datetime, *, limit: int = DUE_BATCH) -> list[int]:
    """Comparisons whose jobs have all ended (or are gone), not sent recently; marked as sent now.

    Also those a comparison task took but never finished (it died): taken again after STALE_RUN."""
    ended = [int(s) for s in TERMINAL] + [DELETED]
    unfinished = (
        select(ComparisonJob.comparison_id)
        .join(Job, Job.id == ComparisonJob.job_id)
        .where(ComparisonJob.comparison_id == Comparison.id, Job.state.not_in(ended))
        .exists()
    )
    waiting = (Comparison.state == int(ComparisonState.WAITING)) & ~unfinished
    stale = (Comparison.state == int(ComparisonState.RUNNING)) & (Comparison.started_at < now - STALE_RUN)
    not_recent = or_(Comparison.sent_at.is_(None), Comparison.sent_at < now - RESEND_AFTER)
    ids = [
        int(i)
        for i in session.scalars(
            select(Comparison.id).where(Comparison.state.in_([0, 1]), or_(waiting, stale), not_recent).order_by(Comparison.id).limit(limit)
        ).all()
    ]
    if ids:
        session.execute(update(Comparison).where(Comparison.id.in_(ids)).values(sent_at=now).execution_options(synchronize_session=False))
    return ids


def _take(session: Session, now: datetime, comparison_id: int) -> bool:
    """The task's claim: WAITING (or a stale RUNNING) -> RUNNING. A duplicate message takes nothing."""
    res = session.execute(
        update(Comparison)
        .where(
            Comparison.id == comparison_id,
            or_(
                Comparison.state == int(ComparisonState.WAITING),
                (Comparison.state == int(ComparisonState.RUNNING)) & (Comparison.started_at < now - STALE_RUN),
            ),
        )
        .values(state=int(ComparisonState.RUNNING), started_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- the comparison task


@dataclass
class _Rendering:
    job_id: int
    position: int
    page_count: int | None = None
    note: str | None = None
    pages: dict[int, bytes] | None = None


def run(db: Database, now: Callable[[], datetime], comparison_id: int) -> bool:
    """Compare the renderings of a comparison whose jobs have ended; False if another task has it.

    Each result is read in its own short transaction; the pixels are worked on outside any; the
    pages, scores and difference images are stored in one transaction at the end."""
    from app.services import comparison_images as images

    with db.session() as s:
        if not _take(s, now(), comparison_id):
            return False
        cmp = s.get(Comparison, comparison_id)
        assert cmp is not None
        client_id, fmt = cmp.client_id, cmp.format
        members = [(m.job_id, m.position) for m in s.scalars(select(ComparisonJob).where(ComparisonJob.comparison_id == comparison_id).order_by(ComparisonJob.position))]
    renderings = []
    for job_id, position in members:
        r = _Rendering(job_id, position)
        with db.read_session() as s:
            data, result_fmt, r.note = _result_bytes(s, job_id, client_id)
        if data is not None:
            try:
                count, pages = images.rasterize(data, result_fmt or fmt)
                r.page_count, r.pages = count, {p.page: p.png for p in pages}
                if count > len(pages):
                    r.note = f"{count} pages; the first {len(pages)} compared"
            except images.RasterizeError as exc:
                r.note = str(exc)
        renderings.append(r)

    scored = [r for r in renderings if r.pages is not None]
    scores: list[ComparisonScore] = []
    diffs: dict[tuple[int, int, int], bytes] = {}
    for a_id, b_id in rules.pairs([r.job_id for r in scored]):
        a = next(r for r in scored if r.job_id == a_id)
        b = next(r for r in scored if r.job_id == b_id)
        assert a.pages is not None and b.pages is not None
        for pair in rules.align(len(a.pages), len(b.pages)):
            row = ComparisonScore(comparison_id=comparison_id, job_a=a_id, job_b=b_id, page=pair.page, missing=pair.missing)
            if pair.missing is None:
                d = images.compare(a.pages[pair.page], b.pages[pair.page])
                row.score = d.score
                diffs[(a_id, b_id, pair.page)] = d.image
            scores.append(row)

    with db.session() as s:
        stamp = now()
        for r in renderings:
            s.execute(
                update(ComparisonJob)
                .where(ComparisonJob.comparison_id == comparison_id, ComparisonJob.position == r.position)
                .values(page_count=r.page_count, note=r.note)
            )
            for page, png in (r.pages or {}).items():
                blob = store_blob(s, png, stamp)
                w, h = _png_size(png)
                s.add(ComparisonPage(comparison_id=comparison_id, job_id=r.job_id, page=page, blob_id=blob.id, width=w, height=h))
        for row in scores:
            key = (row.job_a, row.job_b, row.page)
            if key in diffs:
                row.diff_blob_id = store_blob(s, diffs[key], stamp).id
            s.add(row)
        error = None if len(scored) >= 2 else "fewer than two renderings to compare"
        s.execute(
            update(Comparison)
            .where(Comparison.id == comparison_id)
            .values(state=int(ComparisonState.COMPLETE), finished_at=stamp, error=error)
        )
    log.info("comparison %d: %d renderings, %d page scores", comparison_id, len(scored), len(scores))
    return True


def _png_size(png: bytes) -> tuple[int, int]:
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def _result_bytes(session: Session, job_id: int, client_id: int) -> tuple[bytes | None, str, str | None]:
    """(the result's bytes, its format, None) or (None, "", why there is none)."""
    job = session.get(Job, job_id)
    if job is None or job.state == DELETED or job.client_id != client_id:
        return None, "", "job deleted"
    if job.state == JobState.FAILED:
        return None, "", f"job FAILED: {job.failure_reason or 'no reason given'}"
    if job.state != JobState.COMPLETE:
        return None, "", f"job {JobState(job.state).name}"
    row = session.execute(select(Result.blob_id, Result.format).where(Result.job_id == job_id)).first()
    if row is None:
        return None, "", "job has no result"
    return read_blob(session, row[0]), row[1], None


def mark_failed(db: Database, now: datetime, comparison_id: int, reason: str) -> None:
    """The task gave up on a comparison (an unexpected error): FAILED with the reason, not retried."""
    with db.session() as s:
        s.execute(
            update(Comparison)
            .where(Comparison.id == comparison_id)
            .values(state=int(ComparisonState.FAILED), finished_at=now, error=reason[:1000])
        )


# ---------------------------------------------------------------- views


@dataclass(frozen=True)
class PageView:
    page: int
    score: float | None  # against the reference; None when missing on one side or not compared
    missing: str | None  # "reference" | "rendering" when only one of the two has the page
    has_image: bool  # the rendering's page image was stored


@dataclass(frozen=True)
class RenderingView:
    job_id: int
    application: str
    version: str
    job_status: int | None  # None: the job is gone (deleted, purged)
    page_count: int | None
    note: str | None
    pages: tuple[PageView, ...]


@dataclass(frozen=True)
class ComparisonView:
    comparison_id: int
    client_id: int
    filename: str
    format: str
    state: str  # waiting | running | complete | failed
    created_at: datetime
    finished_at: datetime | None
    dpi: int
    error: str | None
    reference_job_id: int | None
    page_counts_differ: bool
    renderings: tuple[RenderingView, ...]


def view(session: Session, comparison_id: int, *, client_id: int | None = None, reference_job_id: int | None = None) -> ComparisonView:
    """A comparison with each rendering's pages scored against the reference (the first rendering
    that has pages, or the one named). `client_id`: only the owner may see it (None: operator)."""
    cmp = session.get(Comparison, comparison_id)
    if cmp is None:
        raise NotFound(f"unknown comparisonId {comparison_id}")
    if client_id is not None and cmp.client_id != client_id:
        raise NotOwner("the comparison belongs to another client application")
    members = list(session.scalars(select(ComparisonJob).where(ComparisonJob.comparison_id == comparison_id).order_by(ComparisonJob.position)))
    ids = [m.job_id for m in members]
    states = dict(session.execute(select(Job.id, Job.state).where(Job.id.in_(ids), Job.state != DELETED)).all())
    stored = {
        (j, p) for j, p in session.execute(select(ComparisonPage.job_id, ComparisonPage.page).where(ComparisonPage.comparison_id == comparison_id))
    }
    if reference_job_id is not None and reference_job_id not in ids:
        raise BadArgument(f"job {reference_job_id} is not one of comparison {comparison_id}'s jobs")
    reference = reference_job_id
    if reference is None:
        with_pages = [m.job_id for m in members if m.page_count]
        reference = with_pages[0] if with_pages else (ids[0] if ids else None)
    score_rows = session.scalars(
        select(ComparisonScore).where(
            ComparisonScore.comparison_id == comparison_id, or_(ComparisonScore.job_a == reference, ComparisonScore.job_b == reference)
        )
    ).all()
    against: dict[int, dict[int, ComparisonScore]] = {}
    for stored_row in score_rows:
        other = stored_row.job_b if stored_row.job_a == reference else stored_row.job_a
        against.setdefault(other, {})[stored_row.page] = stored_row
    renderings = []
    for m in members:
        pages = []
        rows = against.get(m.job_id, {})
        compared = len({p for j, p in stored if j == m.job_id})
        for page in range(1, max(compared, len(rows)) + 1):
            row = rows.get(page)
            missing = None
            if row is not None and row.missing is not None:
                # Stored per (a, b): translate "a"/"b" into which of reference/rendering lacks the page.
                lacking = row.job_a if row.missing == "a" else row.job_b
                missing = "reference" if lacking == reference else "rendering"
            score = 0.0 if m.job_id == reference and (m.job_id, page) in stored else (row.score if row is not None else None)
            pages.append(PageView(page, score, missing, (m.job_id, page) in stored))
        renderings.append(
            RenderingView(
                m.job_id, m.application, m.version, states.get(m.job_id), m.page_count, m.note,
                tuple(pages),
            )
        )
    counts = {m.page_count for m in members if m.page_count is not None}
    return ComparisonView(
        comparison_id=int(cmp.id), client_id=cmp.client_id, filename=cmp.filename, format=cmp.format,
        state=rules.STATE_NAMES[ComparisonState(cmp.state)], created_at=cmp.created_at, finished_at=cmp.finished_at,
        dpi=cmp.dpi, error=cmp.error, reference_job_id=reference,
        page_counts_differ=len(counts) > 1,
        renderings=tuple(renderings),
    )


def page_png(session: Session, comparison_id: int, job_id: int, page: int) -> bytes:
    blob_id = session.scalar(
        select(ComparisonPage.blob_id).where(
            ComparisonPage.comparison_id == comparison_id, ComparisonPage.job_id == job_id, ComparisonPage.page == page
        )
    )
    if blob_id is None:
        raise NotFound(f"comparison {comparison_id} has no page {page} of job {job_id}")
    return read_blob(session, blob_id)


def diff_png(session: Session, comparison_id: int, job_a: int, job_b: int, page: int) -> bytes:
    """The difference image of a page of two renderings (either order)."""
    blob_id = session.scalar(
        select(ComparisonScore.diff_blob_id).where(
            ComparisonScore.comparison_id == comparison_id,
            or_(
                (ComparisonScore.job_a == job_a) & (ComparisonScore.job_b == job_b),
                (ComparisonScore.job_a == job_b) & (ComparisonScore.job_b == job_a),
            ),
            ComparisonScore.page == page,
        )
    )
    if blob_id is None:
        raise NotFound(f"comparison {comparison_id} has no difference image of page {page} for jobs {job_a} and {job_b}")
    return read_blob(session, blob_id)


def for_job(session: Session, job_id: int) -> list[int]:
    """The comparisons a job belongs to (the job page links them)."""
    return [int(i) for i in session.scalars(select(ComparisonJob.comparison_id).where(ComparisonJob.job_id == job_id).order_by(ComparisonJob.comparison_id))]


# ---------------------------------------------------------------- retention


def purge_expired(session: Session, now: datetime, days: int, *, batch: int = 100) -> int:
    """Remove comparisons (rows, page images, difference images) created more than `days` ago."""
    if days <= 0:
        return 0
    ids = list(session.scalars(select(Comparison.id).where(Comparison.created_at < now - timedelta(days=days)).limit(batch)).all())
    return remove(session, ids)


def remove(session: Session, ids: Sequence[int]) -> int:
    return remove_comparisons(session, list(ids))
