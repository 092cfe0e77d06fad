"""/metrics: database gauges at scrape time, shared counters, nothing about clients or job data."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.domain.states import JobState
from app.web import create_app
from tests.conftest import add_client, add_factory, submit_job
from tests.integration.ops.conftest import poll_once

CALC = "LibreOffice Calc|7.4|ods|pdf"


def scrape(app) -> tuple[str, dict[str, dict[tuple, float]]]:  # type: ignore[no-untyped-def]
    resp = app.test_client().get("/metrics")
    assert resp.status_code == 200
    assert resp.content_type.startswith("text/plain")
    text = resp.get_data(as_text=True)
    samples: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = tuple(sorted(s.labels.items()))
            assert key not in samples.setdefault(s.name, {}), f"duplicate sample {s.name}{s.labels}"
            samples[s.name][key] = s.value
    return text, samples


def jobs_gauge(samples, state: str, app: str = "LibreOffice Writer", version: str = "7.4") -> float:  # type: ignore[no-untyped-def]
    return samples["convhub_jobs"][(("application", app), ("state", state), ("version", version))]


@pytest.fixture
def rt(make_runtime, any_db_url):  # type: ignore[no-untyped-def]
    return make_runtime(database_url=any_db_url, operator_password="x")


def test_jobs_by_state_oldest_age_and_active_factories(rt, clock) -> None:  # type: ignore[no-untyped-def]
    app = create_app(rt)
    cid = add_client(rt, "petshow-secret-client-name")
    add_factory(rt, workers=("LibreOffice Writer|7.4|odt|pdf,png,odf", CALC))
    _, guid1 = submit_job(rt, cid)
    clock.advance(30)
    _, guid2 = submit_job(rt, cid)
    clock.advance(90)

    text, m = scrape(app)
    assert m["convhub_metrics_database_up"][()] == 1
    assert jobs_gauge(m, "QUEUED") == 2
    assert jobs_gauge(m, "COMPLETE") == 0
    # A pair a factory serves but nobody submitted to reports explicit zeros.
    assert jobs_gauge(m, "QUEUED", "LibreOffice Calc") == 0
    assert (
        m["convhub_oldest_queued_age_seconds"][(("application", "LibreOffice Writer"), ("version", "7.4"))]
        == 120
    )
    assert (
        m["convhub_oldest_queued_age_seconds"][(("application", "LibreOffice Calc"), ("version", "7.4"))] == 0
    )
    assert m["convhub_factories_active"][()] == 0  # registered, never polled

    claimed = poll_once(rt)
    assert claimed is not None and claimed.guid == guid1
    text, m = scrape(app)
    assert jobs_gauge(m, "QUEUED") == 1
    assert jobs_gauge(m, "REQUESTED_FOR_PROCESSING") == 1
    assert (
        m["convhub_oldest_queued_age_seconds"][(("application", "LibreOffice Writer"), ("version", "7.4"))]
        == 90
    )
    assert m["convhub_factories_active"][()] == 1
    assert m["convhub_factories"][(("status", "registered"),)] == 1

    clock.advance(301)
    _, m = scrape(app)
    assert m["convhub_factories_active"][()] == 0

    # No client names, GUIDs or file names anywhere in the exposition.
    for secret in ("petshow-secret-client-name", guid1, guid2, "doc.odt", "factory-1"):
        assert secret not in text


def test_shared_counters_are_exposed(runtime) -> None:  # type: ignore[no-untyped-def]
    from app import metrics

    app = create_app(runtime)
    before = scrape(app)[1].get("convhub_polls_total", {}).get((("outcome", "empty"),), 0.0)
    metrics.POLLS.labels("empty").inc()
    text, m = scrape(app)
    assert m["convhub_polls_total"][(("outcome", "empty"),)] == before + 1
    assert "# TYPE convhub_poll_seconds histogram" in text
    assert m["convhub_leases_expired_total"][()] == 0 and m["convhub_callback_failures_total"][()] == 0
    # The web tier's own request counter: a fixed endpoint label, never the raw path.
    app.test_client().get("/ops/jobs/123").get_data()  # counted once the body is sent
    _, m = scrape(app)
    ops = {k: v for k, v in m["convhub_http_requests_total"].items() if ("endpoint", "ops") in k}
    assert sum(ops.values()) >= 1
    assert not any("123" in str(k) for k in m["convhub_http_requests_total"])


def test_metrics_answer_when_the_database_is_down(make_runtime, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rt = make_runtime(database_url=f"sqlite:///{tmp_path}/missing-dir/none.db", broker=False)
    app = create_app(rt)
    _, m = scrape(app)
    assert m["convhub_metrics_database_up"][()] == 0
    assert "convhub_jobs" not in m


def test_metrics_need_no_operator_credentials(ops_rt) -> None:  # type: ignore[no-untyped-def]
    app = create_app(ops_rt)
    assert app.test_client().get("/metrics").status_code == 200
    assert app.test_client().get("/ops").status_code == 401


def test_worker_events_are_counted_in_the_database(make_runtime, any_db_url, clock) -> None:  # type: ignore[no-untyped-def]
    """Expired leases and failed callbacks happen in Celery workers; /metrics on any web process shows them."""
    from sqlalchemy import select

    from app.db.models import Callback
    from app.services import callbacks, maintenance

    rt = make_runtime(database_url=any_db_url, max_attempts=1)
    app = create_app(rt)
    cid = add_client(rt, "c-metrics")
    add_factory(rt, "f-metrics", "factory-secret-1")
    submit_job(rt, cid, failure_url="http://127.0.0.1:9/nothing-listens")
    assert poll_once(rt, "f-metrics", "factory-secret-1") is not None
    clock.advance(rt.settings.lease_seconds)
    with rt.db.session() as s:  # the one attempt expires: FAILED, and a failure callback is owed
        assert [st for _, st in maintenance.reclaim_expired(s, rt.now(), rt.notifier, rt.mirror)] == [JobState.FAILED]
    with rt.db.read_session() as s:
        cb = s.scalar(select(Callback.id))

    def refused(url: str, timeout: float) -> int:
        raise ConnectionRefusedError("refused")

    with rt.db.session() as s:
        assert callbacks.deliver(s, rt.now(), cb, refused, timeout=1, allow_private=True) is False
    _, m = scrape(app)
    assert m["convhub_leases_expired_total"][()] == 1
    assert m["convhub_callback_failures_total"][()] == 1
