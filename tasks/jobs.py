"""Thin tasks: take ids, open a session, call one service, own only retry/ack policy."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta

from celery import Celery

from app.runtime import Runtime, build_runtime
from app.services import admin, callbacks, jobs

log = logging.getLogger("convhub.tasks")

_runtime: Runtime | None = None
_lock = threading.Lock()


def runtime_for(app: Celery) -> Runtime:
    """The worker's Runtime, built on first use (not at import) and shared by its tasks."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(app.conf.convhub_settings, celery=app)
        return _runtime


def set_runtime(rt: Runtime | None) -> None:
    """Tests inject a runtime (with a fixed clock)."""
    global _runtime
    with _lock:
        _runtime = rt


def _http_get(url: str, timeout: float) -> int:
    import requests

    resp = requests.get(url, timeout=timeout, allow_redirects=False)
    return resp.status_code


def register(app: Celery) -> None:
    @app.task(name="convhub.reclaim", ignore_result=True, shared=False)
    def reclaim() -> int:
        rt = runtime_for(app)
        total = 0
        while True:
            with rt.db.session() as s:
                done = jobs.reclaim_expired(s, rt.now(), rt.notifier, rt.mirror)
            total += len(done)
            for job_id, state in done:
                log.info("lease expired job=%s outcome=%s", job_id, state.name)
            if len(done) < 1000:
                return total

    @app.task(name="convhub.reconcile", ignore_result=True, shared=False)
    def reconcile() -> dict[str, int]:
        rt = runtime_for(app)
        with rt.db.session() as s:
            repaired = jobs.reconcile(
                s,
                rt.mirror,
                rt.now(),
                stale_after=timedelta(seconds=2 * rt.settings.reconcile_interval_seconds),
                known_pairs=admin.served_pairs(s, include_disabled=True),  # idle pairs too: stale messages
            )
        if repaired:
            log.warning("mirror reconciled: %s", repaired)
        swept = rt.mirror.sweep_consumed()
        if swept:
            log.info("embedded broker: %d consumed message rows deleted", swept)
        return repaired

    @app.task(name="convhub.purge_deleted", ignore_result=True, shared=False)
    def purge_deleted() -> int:
        rt = runtime_for(app)
        total = 0
        while True:
            with rt.db.session() as s:
                n = jobs.purge_deleted(s, rt.now())
            total += n
            if n < 5000:
                return total

    @app.task(name="convhub.retention", ignore_result=True, shared=False)
    def retention() -> int:
        rt = runtime_for(app)
        with rt.db.session() as s:
            return jobs.retention_purge(s, rt.now(), rt.settings.retention_days)

    @app.task(name="convhub.send_callback", ignore_result=True, shared=False)
    def send_callback(callback_id: int) -> bool:
        rt = runtime_for(app)
        with rt.db.session() as s:
            return callbacks.deliver(
                s,
                rt.now(),
                callback_id,
                _http_get,
                timeout=rt.settings.callback_timeout_seconds,
                allow_private=rt.settings.callback_allow_private,
            )

    @app.task(name="convhub.callbacks_due", ignore_result=True, shared=False)
    def callbacks_due() -> int:
        rt = runtime_for(app)
        with rt.db.read_session() as s:
            ids = callbacks.due(s, rt.now())
        for cb_id in ids:
            send_callback.delay(cb_id)
        return len(ids)
