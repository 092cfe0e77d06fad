"""Physical removal of jobs and uploads with their bytes (purges, retention, removing a client)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from .blobs import delete_blobs
from .models import Content, Job, Result


def remove_contents(session: Session, content_ids: list[int]) -> None:
    """Delete uploads and their bytes (callers make sure no job uses them)."""
    if not content_ids:
        return
    blob_ids = list(session.scalars(select(Content.blob_id).where(Content.id.in_(content_ids))).all())
    session.execute(delete(Content).where(Content.id.in_(content_ids)))
    delete_blobs(session, blob_ids)


def remove_jobs(session: Session, ids: list[int]) -> None:
    """Delete jobs with their results, and the uploads no other job uses."""
    if not ids:
        return
    results = session.execute(select(Result.id, Result.blob_id).where(Result.job_id.in_(ids))).all()
    if results:
        session.execute(delete(Result).where(Result.id.in_([r[0] for r in results])))
        delete_blobs(session, [r[1] for r in results])
    content_ids = set(session.scalars(select(Job.content_id).where(Job.id.in_(ids))).all())
    session.execute(delete(Job).where(Job.id.in_(ids)))
    # Uploads shared with surviving jobs stay; uploads now unused go with their last job.
    still_used = set(session.scalars(select(Job.content_id).where(Job.content_id.in_(content_ids))).all())
    remove_contents(session, sorted(content_ids - still_used))

