"""Thin tasks: each takes ids (or nothing, for beat), calls ONE service with the app's runtime, and
owns only retry/ack policy. The loops and the logging of what was done live in the services."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import Celery

from app.services import callbacks, maintenance
from tasks.base import RuntimeTask, skip_when_unavailable

SEND_CALLBACK = "convhub.send_callback"


def _http_get(url: str, timeout: float) -> int:
    import requests

    resp = requests.get(url, timeout=timeout, allow_redirects=False)
    return resp.status_code


def reclaim(task: RuntimeTask) -> int:
    """Beat: expired leases back to QUEUED (or FAILED), all of them."""
    rt = task.runtime
    return len(maintenance.reclaim_all(rt.db, rt.now(), rt.notifier, rt.mirror))


def reconcile(task: RuntimeTask) -> dict[str, int]:
    """Beat: repair the per-pair queues against the database."""
    rt = task.runtime
    stale_after = timedelta(seconds=2 * rt.settings.reconcile_interval_seconds)
    return maintenance.reconcile_mirror(rt.db, rt.mirror, rt.now(), stale_after=stale_after)


def purge_deleted(task: RuntimeTask) -> int:
    """Beat: remove the rows and bytes of jobs their clients deleted."""
    rt = task.runtime
    return maintenance.purge_deleted_all(rt.db, rt.now())


def fold_counts(task: RuntimeTask) -> int:
    """Beat: fold the job-count deltas into the per-(client, state) totals (PostgreSQL)."""
    with task.runtime.db.session() as s:
        return maintenance.fold_job_counts(s)


def retention(task: RuntimeTask) -> int:
    """Beat: remove finished jobs older than the retention period."""
    rt = task.runtime
    return maintenance.retention_all(rt.db, rt.now(), rt.settings.retention_days)


def send_callback(task: RuntimeTask, callback_id: int) -> bool:
    """Deliver one callback (queued after the commit that created it)."""
    rt = task.runtime
    return callbacks.deliver_one(
        rt.db,
        rt.now(),
        callback_id,
        _http_get,
        timeout=rt.settings.callback_timeout_seconds,
        allow_private=rt.settings.callback_allow_private,
    )


def callbacks_due(task: RuntimeTask) -> int:
    """Beat: queue a delivery for every callback whose retry time has come."""
    rt = task.runtime
    return callbacks.send_due(rt.db, rt.now(), task.app.tasks[SEND_CALLBACK].delay)


TASKS: dict[str, Callable[..., Any]] = {
    "convhub.reclaim": reclaim,
    "convhub.reconcile": reconcile,
    "convhub.purge_deleted": purge_deleted,
    "convhub.retention": retention,
    "convhub.fold_counts": fold_counts,
    SEND_CALLBACK: send_callback,
    "convhub.callbacks_due": callbacks_due,
}


def register(app: Celery) -> None:
    """Register the tasks on `app` only (not shared: other apps in the process are untouched)."""
    for name, fn in TASKS.items():
        app.task(name=name, bind=True, base=RuntimeTask, ignore_result=True, shared=False)(skip_when_unavailable(fn))
