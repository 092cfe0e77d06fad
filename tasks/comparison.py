"""The rendering comparison's tasks (app.services.comparison).

- `convhub.comparisons_due` (beat, every few seconds): sends `convhub.compare` for every comparison
  whose jobs have all ended. Why a sweep and not a hook where a job ends: a job ends in many places
  (jobs.finish and jobs.fail, lease reclaim, cancellation, quarantine, a cached result completing
  followers, a client's delete), and a hook in each would still lose the start when the broker is
  down or the process dies between the commit and the publish. The sweep reads the database, the
  authority, so nothing is missed and a lost message is sent again; its cost is one indexed query
  over the open comparisons, and the comparison starts within one sweep interval of the last job.
- `convhub.compare(comparison_id)`: the rendering work, once per comparison (a duplicate message
  takes nothing: the service claims the comparison first).
- `convhub.comparisons_retention` (beat, hourly): comparisons older than the retention period.
"""

from __future__ import annotations

import logging

from celery import shared_task

from app.services import comparison
from tasks.base import RuntimeTask, skip_when_unavailable

DUE_TASK = "convhub.comparisons_due"
COMPARE_TASK = "convhub.compare"
RETENTION_TASK = "convhub.comparisons_retention"
DUE_INTERVAL_SECONDS = 5

log = logging.getLogger("convhub.tasks.comparison")


@shared_task(name=DUE_TASK, bind=True, base=RuntimeTask, ignore_result=True)
@skip_when_unavailable
def comparisons_due(self: RuntimeTask) -> list[int]:
    """Send the comparison task for each comparison that is due; their ids."""
    rt = self.runtime
    with rt.db.session() as s:
        ids = comparison.due(s, rt.now())
    for cid in ids:  # after the commit: a lost message is sent again by a later sweep
        self.app.send_task(COMPARE_TASK, args=[cid], queue=self.app.conf.task_default_queue, retry=False)
    return ids


@shared_task(name=COMPARE_TASK, bind=True, base=RuntimeTask, ignore_result=True)
def compare(self: RuntimeTask, comparison_id: int) -> bool:
    """Rasterize, align and score one comparison's renderings; False if another task has it."""
    rt = self.runtime
    try:
        return comparison.run(rt.db, rt.now, comparison_id)
    except Exception as exc:  # recorded on the comparison: retrying a broken document helps no one
        log.exception("comparison %d failed", comparison_id)
        comparison.mark_failed(rt.db, rt.now(), comparison_id, f"{exc.__class__.__name__}: {exc}")
        return False


@shared_task(name=RETENTION_TASK, bind=True, base=RuntimeTask, ignore_result=True)
@skip_when_unavailable
def retention(self: RuntimeTask) -> int:
    """Remove comparisons older than the retention period (one batch per run)."""
    rt = self.runtime
    with rt.db.session() as s:
        return comparison.purge_expired(s, rt.now(), rt.settings.retention_days)
