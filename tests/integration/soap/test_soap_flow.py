"""Full client flow over SOAP: upload once, convert for two application/versions, a factory finishes
one and fails the other until FAILED; status, result and both callbacks as expected."""

from __future__ import annotations

import base64
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import select

from app.db.models import Callback
from app.domain.states import JobState
from app.services import leases
from app.services.poll import poll
from tasks.base import attach_runtime
from tests.conftest import add_client, add_factory, start_server
from tests.integration.soap.soapkit import call

WRITER_74 = "LibreOffice Writer|7.4|odt|pdf,png,odf"
WRITER_24 = "LibreOffice Writer|24.2|odt|pdf"


class _Hooks(BaseHTTPRequestHandler):
    hits: list[tuple[str, dict[str, list[str]]]] = []

    def do_GET(self) -> None:
        u = urlsplit(self.path)
        type(self).hits.append((u.path, parse_qs(u.query)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


def test_full_flow_with_callbacks(runtime, clock):
    rt = runtime
    add_client(rt)
    add_factory(rt, workers=(WRITER_74, WRITER_24))
    srv = start_server(rt)
    hooks = HTTPServer(("127.0.0.1", 0), _Hooks)
    _Hooks.hits = []
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{hooks.server_port}"
    attach_runtime(rt.celery, rt)
    try:
        doc = b"PK\x03\x04 the one upload"
        up = call(
            srv, "contentUpload", [("content", base64.b64encode(doc).decode()), ("filename", "letter.odt")]
        )
        assert up.status == 200
        ident = up.get("contentIdentifier")

        ids = {}
        for version in ("7.4", "24.2"):
            r = call(
                srv,
                "contentConvert",
                [
                    ("contentIdentifier", ident),
                    ("application", "LibreOffice Writer"),
                    ("version", version),
                    ("format", "pdf"),
                    ("successUrl", f"{hook}/ok?v={version}"),
                    ("failureUrl", f"{hook}/failed?v={version}"),
                ],
            )
            assert r.status == 200, r.get("statusMessage")
            ids[version] = int(r.get("jobId"))
        assert ids["7.4"] < ids["24.2"]

        with rt.db.read_session() as s:
            factory = rt.auth.factory(s, "factory-1", "factory-secret-1", rt.now())
        # The oldest job first: 7.4, which the factory finishes.
        first = poll(rt.db, rt.now(), rt.policy, rt.mirror, factory)
        assert first is not None and first.id == ids["7.4"]
        with rt.db.session() as s:
            leases.finish(
                s,
                rt.now(),
                rt.notifier,
                guid=first.guid,
                owner="factory-1",
                token=first.lease_token,
                fmt="pdf",
                parts=b"%PDF-1.7 ok",
                max_bytes=10**6,
            )
        # 24.2 fails on every attempt until FAILED.
        for attempt in range(1, rt.settings.max_attempts + 1):
            clock.advance(1)
            c = poll(rt.db, rt.now(), rt.policy, rt.mirror, factory)
            assert c is not None and c.id == ids["24.2"] and c.attempt == attempt
            assert call(srv, "getContentConvertStatus", [("jobId", c.id)]).get("jobStatus") == "1"
            with rt.db.session() as s:
                new = leases.fail(
                    s,
                    rt.now(),
                    rt.policy,
                    rt.notifier,
                    rt.mirror,
                    guid=c.guid,
                    owner="factory-1",
                    token=c.lease_token,
                    reason=f"crash {attempt}",
                )
            assert new == (JobState.FAILED if attempt == rt.settings.max_attempts else JobState.QUEUED)
        assert poll(rt.db, rt.now(), rt.policy, rt.mirror, factory) is None

        ok = call(srv, "getContentConvertStatus", [("jobId", ids["7.4"])])
        assert (ok.status, ok.get("jobStatus"), ok.get("attempts"), ok.get("failureReason")) == (
            200,
            "3",
            "1",
            None,
        )
        bad = call(srv, "getContentConvertStatus", [("jobId", ids["24.2"])])
        assert (bad.get("jobStatus"), bad.get("attempts"), bad.get("failureReason")) == ("4", "3", "crash 3")
        res = call(srv, "getContentConvertResult", [("jobId", ids["7.4"])])
        assert (res.status, res.get("format"), res.get("filename")) == (200, "pdf", "letter.pdf")
        assert [base64.b64decode(c.text or "") for c in res.body.findall("content")] == [b"%PDF-1.7 ok"]
        assert call(srv, "getContentConvertResult", [("jobId", ids["24.2"])]).status == 518
        counts = call(srv, "getContentConvertCounts")
        assert [
            (c.findtext("jobStatus"), c.findtext("count")) for c in counts.body.findall("contentConvertCount")
        ] == [("3", "1"), ("4", "1")]

        # Deliver the queued callbacks with the real Celery task, run eagerly in-process.
        with rt.db.read_session() as s:
            cbs = s.execute(select(Callback.id, Callback.job_id, Callback.url)).all()
        assert sorted((j, u.split("?")[0].rsplit("/", 1)[1]) for _, j, u in cbs) == [
            (ids["7.4"], "ok"),
            (ids["24.2"], "failed"),
        ]
        send = rt.celery.tasks["convhub.send_callback"]
        assert all(send(cb_id) for cb_id, _, _ in cbs)
        got = sorted((p, q["v"][0], q["jobId"][0], q["jobStatus"][0]) for p, q in _Hooks.hits)
        assert got == sorted(
            [("/ok", "7.4", str(ids["7.4"]), "3"), ("/failed", "24.2", str(ids["24.2"]), "4")]
        )
    finally:
        attach_runtime(rt.celery, None)
        hooks.shutdown()
        hooks.server_close()
        srv.stop()
