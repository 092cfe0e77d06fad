"""The comparison's tasks on a real Celery worker (in-process, as in test_trends_celery.py): beat's
sweep (`convhub.comparisons_due`) sends `convhub.compare` for a comparison whose jobs have ended, the
worker scores it; the hourly retention task removes it once old enough."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from PIL import Image
from sqlalchemy import func, select

import tasks.comparison  # the shared tasks must exist before the test app is finalised
from app.db.models import Comparison
from app.services import comparison, leases, submission
from tasks.base import attach_runtime
from tasks.celery_app import make_celery
from tests.conftest import add_client, add_factory, celery_test_config, close_runtime, make_settings, wait_for
from tests.integration.ops.conftest import poll_once


@pytest.fixture
def settings(tmp_path):  # type: ignore[no-untyped-def]
    (tmp_path / "var").mkdir(exist_ok=True)
    return make_settings(tmp_path, broker_url=f"sqla+sqlite:///{tmp_path / 'var' / 'broker.db'}")


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


def png(box: bool) -> bytes:
    img = Image.new("RGB", (40, 40), "white")
    if box:
        img.paste(Image.new("RGB", (20, 20), "black"), (0, 0))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def test_the_beat_schedule_sweeps_often_and_purges_hourly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = make_celery(make_settings(tmp_path))
    schedule = app.conf.beat_schedule
    assert schedule["comparisons-due"] == {"task": tasks.comparison.DUE_TASK, "schedule": timedelta(seconds=5)}
    assert schedule["comparisons-retention"] == {"task": tasks.comparison.RETENTION_TASK, "schedule": timedelta(hours=1)}
    assert {tasks.comparison.DUE_TASK, tasks.comparison.COMPARE_TASK, tasks.comparison.RETENTION_TASK} <= set(app.tasks)


def test_sweep_starts_the_comparison_task_on_a_real_worker(rt, clock, celery_worker) -> None:  # type: ignore[no-untyped-def]
    cid_client = add_client(rt)
    add_factory(rt, "factory-1", "factory-secret-1", workers=("LibreOffice Writer|7.4|odt|png", "AbiWord|3.0|odt|png"))
    with rt.db.session() as s:
        content = submission.upload(s, rt.now(), client_id=cid_client, filename="a.odt", parts=b"PK doc", max_bytes=10**6)
        done = comparison.convert_all(s, rt.now(), rt.mirror, client_id=cid_client, identifier=content.identifier, fmt="png")
    for box in (False, True):
        job = poll_once(rt)
        with rt.db.session() as s:
            leases.finish(s, rt.now(), rt.notifier, guid=job.guid, owner="factory-1", token=job.lease_token, fmt="png",
                          parts=png(box), max_bytes=10**6)

    rt.celery.send_task(tasks.comparison.DUE_TASK, queue="convhub")

    def compared():  # type: ignore[no-untyped-def]
        with rt.db.read_session() as s:
            v = comparison.view(s, done.comparison_id)
        return v if v.state == "complete" else None

    view = wait_for(compared, 30, "the comparison task")
    assert [r.pages[0].score for r in view.renderings] == [0.0, 25.0]  # a 20 x 20 box on 40 x 40

    clock.advance(rt.settings.retention_days * 86400 + 1)
    rt.celery.send_task(tasks.comparison.RETENTION_TASK, queue="convhub")

    def purged() -> bool:
        with rt.db.read_session() as s:
            return s.scalar(select(func.count()).select_from(Comparison)) == 0

    wait_for(purged, 30, "the retention task")
