"""The Celery app carries its runtime: tasks read it from their app, never from a module global."""

from __future__ import annotations

import pytest

from app.runtime import build_runtime, build_worker_app
from app.services import client_views
from tasks.base import attach_runtime, runtime_of
from tasks.celery_app import make_celery
from tests.conftest import add_client, close_runtime, submit_job


def test_a_worker_app_builds_its_runtime_on_first_use_only(runtime):  # type: ignore[no-untyped-def]
    settings = runtime.settings  # a migrated database
    app = build_worker_app(settings)
    rt = runtime_of(app)
    try:
        assert runtime_of(app) is rt and rt.celery is app  # built once, wired to this app
        assert app.tasks["convhub.purge_deleted"].apply().get() == 0
    finally:
        close_runtime(rt)


def test_each_app_runs_its_tasks_with_its_own_runtime(runtime, clock):  # type: ignore[no-untyped-def]
    client = add_client(runtime)
    ids = [submit_job(runtime, client)[0] for _ in range(2)]
    with runtime.db.session() as s:
        for job_id in ids:
            client_views.delete_one(s, runtime.now(), client, job_id)
    other = make_celery(runtime.settings)  # no runtime attached yet
    with pytest.raises(RuntimeError, match="carries no convhub runtime"):
        other.tasks["convhub.purge_deleted"].apply().get()
    assert runtime.celery.tasks["convhub.purge_deleted"].apply().get() == 2  # the runtime build_runtime attached
    attach_runtime(other, runtime)
    assert other.tasks["convhub.purge_deleted"].apply().get() == 0
    rt2 = build_runtime(runtime.settings, clock=clock, celery=other)
    try:
        assert runtime_of(other) is rt2
    finally:
        close_runtime(rt2)
