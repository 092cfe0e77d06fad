"""Beat tasks of the ops page's trends: one snapshot a minute, and pruning old snapshots.

Module-level tasks (`shared_task`): importing this module registers them on every Celery app,
which `tasks.celery_app.make_celery` does. Each opens a session and calls one service function.
"""

from __future__ import annotations

from celery import Task, shared_task

from app.services import trends
from tasks.jobs import runtime_for

SNAPSHOT_TASK = "convhub.snapshot"
PRUNE_TASK = "convhub.snapshot_prune"


@shared_task(name=SNAPSHOT_TASK, bind=True, ignore_result=True)
def snapshot(self: Task) -> int:
    """Record this minute's snapshot (idempotent per minute); rows written."""
    rt = runtime_for(self.app)
    with rt.db.session() as s:
        return trends.record_snapshot(s, rt.now())


@shared_task(name=PRUNE_TASK, bind=True, ignore_result=True)
def prune(self: Task) -> int:
    """Delete snapshots older than trends.KEEP; rows deleted."""
    rt = runtime_for(self.app)
    with rt.db.session() as s:
        return trends.prune(s, rt.now())
