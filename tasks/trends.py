"""Beat tasks of the ops page's trends: one snapshot a minute, and pruning old snapshots.

Module-level tasks (`shared_task`): importing this module registers them on every Celery app,
which `tasks.celery_app.make_celery` does. Each opens a session and calls one service function.
"""

from __future__ import annotations

from celery import shared_task

from app.services import trends
from tasks.base import RuntimeTask, skip_when_unavailable

SNAPSHOT_TASK = "convhub.snapshot"
PRUNE_TASK = "convhub.snapshot_prune"


@shared_task(name=SNAPSHOT_TASK, bind=True, base=RuntimeTask, ignore_result=True)
@skip_when_unavailable
def snapshot(self: RuntimeTask) -> int:
    """Record this minute's snapshot (idempotent per minute); rows written."""
    rt = self.runtime
    with rt.db.session() as s:
        return trends.record_snapshot(s, rt.now())


@shared_task(name=PRUNE_TASK, bind=True, base=RuntimeTask, ignore_result=True)
@skip_when_unavailable
def prune(self: RuntimeTask) -> int:
    """Delete snapshots older than trends.KEEP; rows deleted."""
    rt = self.runtime
    with rt.db.session() as s:
        return trends.prune(s, rt.now())
