"""The trends beat tasks on a real Celery worker (in-process, as in test_celery_mirror.py).

What beat sends every minute (`convhub.snapshot`) and every hour (`convhub.snapshot_prune`) is
executed by the worker with our Runtime and its FakeClock, and the rows it leaves are checked.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from celery.schedules import crontab
from sqlalchemy import select

import tasks.trends  # noqa: F401 - the shared tasks must exist before the test app is finalised
from app.db.models import TrendSnapshot
from tasks.base import attach_runtime
from tasks.celery_app import make_celery
from tests.conftest import add_client, celery_test_config, close_runtime, make_settings, submit_job, wait_for


@pytest.fixture(params=["sqla", "redis"])
def broker_url(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqla":
        (tmp_path / "var").mkdir(exist_ok=True)
        return f"sqla+sqlite:///{tmp_path / 'var' / 'broker.db'}"
    return request.getfixturevalue("redis_broker_url")


@pytest.fixture
def settings(tmp_path, broker_url):  # type: ignore[no-untyped-def]
    return make_settings(tmp_path, broker_url=broker_url)


@pytest.fixture
def celery_config(settings):  # type: ignore[no-untyped-def]
    return celery_test_config(settings)


@pytest.fixture
def celery_worker_parameters():  # type: ignore[no-untyped-def]
    return {"queues": ("convhub",)}


@pytest.fixture
def rt(settings, clock, celery_app):  # type: ignore[no-untyped-def]
    from app.runtime import build_runtime

    celery_app.conf.convhub_settings = settings
    runtime = build_runtime(settings, clock=clock, celery=celery_app)
    yield runtime
    attach_runtime(celery_app, None)
    close_runtime(runtime)


def snapshots(rt) -> list[tuple[datetime, str, int]]:  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        return [
            (r.at, r.application, r.backlog)
            for r in s.scalars(select(TrendSnapshot).order_by(TrendSnapshot.at, TrendSnapshot.application))
        ]


def wait_for_rows(rt, n: int) -> list[tuple[datetime, str, int]]:  # type: ignore[no-untyped-def]
    return wait_for(lambda: rows if len(rows := snapshots(rt)) == n else None, 30, f"{n} snapshot rows")


def test_the_beat_schedule_records_every_minute_and_prunes_hourly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = make_celery(make_settings(tmp_path))
    schedule = app.conf.beat_schedule
    assert schedule["trends-snapshot"]["task"] == "convhub.snapshot"
    assert schedule["trends-snapshot"]["schedule"] == crontab(minute="*")
    assert schedule["trends-prune"] == {"task": "convhub.snapshot_prune", "schedule": timedelta(hours=1)}
    assert {"convhub.snapshot", "convhub.snapshot_prune"} <= set(app.tasks)


def test_snapshot_and_prune_tasks_on_a_real_worker(rt, clock, celery_worker) -> None:  # type: ignore[no-untyped-def]
    client = add_client(rt)
    submit_job(rt, client)
    submit_job(rt, client)
    rt.celery.send_task("convhub.snapshot", queue="convhub")
    noon = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert wait_for_rows(rt, 2) == [(noon, "", 2), (noon, "LibreOffice Writer", 2)]

    # Two days later: a new minute is recorded, and pruning removes the old one.
    clock.advance(2 * 86400 + 60)
    rt.celery.send_task("convhub.snapshot", queue="convhub")
    later = noon + timedelta(days=2, minutes=1)
    assert len(wait_for_rows(rt, 4)) == 4
    rt.celery.send_task("convhub.snapshot_prune", queue="convhub")
    assert wait_for_rows(rt, 2) == [(later, "", 2), (later, "LibreOffice Writer", 2)]
