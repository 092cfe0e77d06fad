"""/ops: operator-only, server-rendered, escaped; job lookup by id or GUID; JSON for refreshes."""

from __future__ import annotations

import json
import logging

from flask import g
from sqlalchemy import update

from app.db.models import Job
from app.logs import JsonFormatter
from app.web import create_app
from tests.conftest import add_client, add_factory, submit_job
from tests.integration.ops.conftest import OPERATOR, OPERATOR_HEADERS, basic, poll_once

EVIL = '<script>alert("x")</script>&<img src=x onerror=alert(1)>'


def test_disabled_without_an_operator_password(runtime) -> None:  # type: ignore[no-untyped-def]
    client = create_app(runtime).test_client()
    for path in ("/ops", "/ops/data.json", "/ops/jobs/1"):
        resp = client.get(path, headers=basic("admin", ""))
        assert resp.status_code == 403
        assert "CONVHUB_OPERATOR_PASSWORD" in resp.get_data(as_text=True)


def test_operator_credentials_are_required(ops_rt) -> None:  # type: ignore[no-untyped-def]
    client = create_app(ops_rt).test_client()
    resp = client.get("/ops")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Basic ")
    for headers in (
        basic(OPERATOR[0], "wrong"),
        basic("someone", OPERATOR[1]),
        basic(OPERATOR[0], OPERATOR[1] + "x"),
        {"Authorization": "Basic !!!not-base64"},
        {"Authorization": "Bearer " + OPERATOR[1]},
    ):
        assert client.get("/ops/data.json", headers=headers).status_code == 401
    ok = client.get("/ops", headers=OPERATOR_HEADERS)
    assert ok.status_code == 200
    assert ok.content_type.startswith("text/html")
    csp = ok.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    # The static script and stylesheet are behind the same door, and served.
    assert client.get("/ops/static/ops.js", headers=OPERATOR_HEADERS).status_code == 200
    assert client.get("/ops/static/ops.js").status_code == 401


def test_page_shows_counts_factories_waiting_and_failures_escaped(ops_rt, clock) -> None:  # type: ignore[no-untyped-def]
    rt = ops_rt
    client = create_app(rt).test_client()
    cid = add_client(rt, "client<b>bold</b>")
    add_factory(rt, name="lo-<i>1</i>")
    ids = [submit_job(rt, cid)[0] for _ in range(3)]
    clock.advance(3600)
    assert poll_once(rt, name="lo-<i>1</i>") is not None
    with rt.db.session() as s:
        s.execute(update(Job).where(Job.id == ids[2]).values(state=4, failure_reason=EVIL))

    html = client.get("/ops", headers=OPERATOR_HEADERS).get_data(as_text=True)
    assert EVIL not in html and "<b>bold</b>" not in html and "<i>1</i>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert "client&lt;b&gt;bold&lt;/b&gt;" in html
    assert "lo-&lt;i&gt;1&lt;/i&gt;" in html
    assert 'data-state="QUEUED">1<' in html and 'data-state="REQUESTED_FOR_PROCESSING">1<' in html
    assert 'data-state="FAILED">1<' in html
    assert f'data-job="{ids[1]}"' in html  # the one still waiting
    assert "1h" in html  # it waited an hour

    data = client.get("/ops/data.json", headers=OPERATOR_HEADERS).get_json()
    assert data["totals"] == {
        "QUEUED": 1,
        "REQUESTED_FOR_PROCESSING": 1,
        "PROCESSING": 0,
        "COMPLETE": 0,
        "FAILED": 1,
    }
    assert data["factories"][0]["name"] == "lo-<i>1</i>" and data["factories"][0]["leases"] == 1
    assert data["factorySummary"] == {"registered": 1, "disabled": 0, "active": 1}
    assert [j["id"] for j in data["oldestWaiting"]] == [ids[1]]
    assert data["oldestWaiting"][0]["ageSeconds"] == 3600
    assert data["recentFailures"][0]["reason"] == EVIL
    assert data["inFlight"] == 1


def test_job_lookup_by_id_and_guid(ops_rt) -> None:  # type: ignore[no-untyped-def]
    rt = ops_rt
    client = create_app(rt).test_client()
    add_factory(rt)
    job_id, guid = submit_job(rt, add_client(rt))
    for ref in (str(job_id), guid):
        resp = client.get(f"/ops/jobs/{ref}", headers=OPERATOR_HEADERS)
        assert resp.status_code == 200
        text = resp.get_data(as_text=True)
        assert guid in text and 'id="job-state">QUEUED<' in text
    redirect = client.get("/ops", query_string={"job": guid}, headers=OPERATOR_HEADERS)
    assert redirect.status_code == 302 and redirect.headers["Location"].endswith(f"/ops/jobs/{guid}")
    for missing in ("999999", "no-such-guid", "9" * 40, "<script>"):
        resp = client.get(f"/ops/jobs/{missing}", headers=OPERATOR_HEADERS)
        assert resp.status_code == 404
        assert "<script>" not in resp.get_data(as_text=True)


def test_one_log_line_per_request_with_actor(ops_rt, caplog) -> None:  # type: ignore[no-untyped-def]
    app = create_app(ops_rt)

    @app.get("/_test_actor")
    def _actor():  # type: ignore[no-untyped-def]
        g.convhub_actor = "factory:lo-1"
        return "ok"

    client = app.test_client()
    with caplog.at_level(logging.DEBUG, logger="convhub.http"):
        client.get("/ops", headers=OPERATOR_HEADERS).get_data()
        client.get("/_test_actor").get_data()
        client.get("/ops").get_data()
        client.get("/healthz").get_data()
    recs = [r for r in caplog.records if r.name == "convhub.http"]
    assert [(r.http_method, r.http_path, r.http_status) for r in recs] == [  # type: ignore[attr-defined]
        ("GET", "/ops", 200),
        ("GET", "/_test_actor", 200),
        ("GET", "/ops", 401),
        ("GET", "/healthz", 200),
    ]
    assert [r.actor for r in recs] == ["operator:admin", "factory:lo-1", "-", "-"]  # type: ignore[attr-defined]
    assert recs[-1].levelno == logging.DEBUG and recs[0].levelno == logging.INFO
    assert all(r.duration_ms >= 0 for r in recs)  # type: ignore[attr-defined]
    line = json.loads(JsonFormatter().format(recs[1]))
    assert (
        line["http_path"] == "/_test_actor" and line["http_status"] == 200 and line["actor"] == "factory:lo-1"
    )
    assert "duration_ms" in line
