"""Physical removal of jobs, uploads and comparisons with their bytes (purges, retention, removing a client).

Stored bytes can be shared: a cached conversion's result points at its leader's blob
(app.services.result_cache). Bytes go only with the last result or upload referencing them."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .blobs import delete_blobs
from .models import Blob, Comparison, ComparisonJob, ComparisonPage, ComparisonScore, Content, Job, Result


def delete_unreferenced(session: Session, blob_ids: list[int]) -> None:
    """Delete those of the blobs no result and no upload references any more.

    PostgreSQL: the blob rows are locked first, so a cache hit that is attaching a result to one of
    them (it holds the row FOR KEY SHARE) either finishes first and is seen here, or waits and then
    finds the blob gone."""
    if not blob_ids:
        return
    ids = sorted(set(blob_ids))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(Blob.id).where(Blob.id.in_(ids)).order_by(Blob.id).with_for_update())
    used = set(session.scalars(select(Result.blob_id).where(Result.blob_id.in_(ids))).all())
    used |= set(session.scalars(select(Content.blob_id).where(Content.blob_id.in_(ids))).all())
    delete_blobs(session, [b for b in ids if b not in used])


def remove_contents(session: Session, content_ids: list[int]) -> None:
    """Delete uploads and their bytes (callers make sure no job uses them)."""
    if not content_ids:
        return
    blob_ids = list(session.scalars(select(Content.blob_id).where(Content.id.in_(content_ids))).all())
    session.execute(delete(Content).where(Content.id.in_(content_ids)))
    delete_unreferenced(session, blob_ids)


def remove_jobs(session: Session, ids: list[int]) -> None:
    """Delete jobs with their results, and the uploads no other job uses."""
    if not ids:
        return
    results = session.execute(select(Result.id, Result.blob_id).where(Result.job_id.in_(ids))).all()
    if results:
        session.execute(delete(Result).where(Result.id.in_([r[0] for r in results])))
        delete_unreferenced(session, [r[1] for r in results])
    content_ids = set(session.scalars(select(Job.content_id).where(Job.id.in_(ids))).all())
    session.execute(delete(Job).where(Job.id.in_(ids)))
    remove_unused_contents(session, content_ids)


def remove_unused_contents(session: Session, content_ids: set[int]) -> None:
    """Uploads shared with surviving jobs stay; uploads now unused go with their last job."""
    if not content_ids:
        return
    still_used = set(session.scalars(select(Job.content_id).where(Job.content_id.in_(content_ids))).all())
    remove_contents(session, sorted(content_ids - still_used))



def remove_comparisons(session: Session, ids: list[int]) -> int:
    """Delete comparisons with their renderings' rows, page images and difference images (the
    images are the comparison's own bytes: nothing else references them)."""
    if not ids:
        return 0
    blobs = list(session.scalars(select(ComparisonPage.blob_id).where(ComparisonPage.comparison_id.in_(ids))).all())
    blobs += [b for b in session.scalars(select(ComparisonScore.diff_blob_id).where(ComparisonScore.comparison_id.in_(ids))).all() if b]
    for table in (ComparisonScore, ComparisonPage, ComparisonJob):
        session.execute(delete(table).where(table.comparison_id.in_(ids)))  # type: ignore[attr-defined]
    session.execute(delete(Comparison).where(Comparison.id.in_(ids)))
    delete_blobs(session, blobs)
    return len(ids)
