"""Every method and every fault code through xmlrpc.client.ServerProxy over a real socket."""

from __future__ import annotations

import socket
import xmlrpc.client

import pytest
from sqlalchemy import select

from app.db.blobs import read_blob
from app.db.models import Factory, Job, Result
from app.domain.states import JobState
from tests.conftest import add_client, add_factory, start_server, submit_job
from tests.integration.xmlrpc.xrkit import FACTORY, SECRET, basic, call_body, proxy, raw_post


def fault_of(fn, *args) -> xmlrpc.client.Fault:  # type: ignore[no-untyped-def]
    with pytest.raises(xmlrpc.client.Fault) as info:
        fn(*args)
    f = info.value
    assert "\n" not in f.faultString and "Traceback" not in f.faultString
    return f


def job_row(rt, guid: str):  # type: ignore[no-untyped-def]
    """A detached snapshot of the job's row."""
    from types import SimpleNamespace

    with rt.db.read_session() as s:
        job = s.scalar(select(Job).where(Job.guid == guid))
        return SimpleNamespace(**{c.key: getattr(job, c.key) for c in Job.__table__.columns})


# ------------------------------------------------------------------ methods


def test_poll_extend_finish(live_server, client_id, fp, clock):
    rt = live_server.runtime
    _, guid = submit_job(rt, client_id, b"PK source", fmt="pdf")
    job = fp.jobs.poll(FACTORY)
    assert job["job"] == guid and job["document"] == "UEsgc291cmNl" and isinstance(job["pageStart"], int)
    assert job_row(rt, guid).state == JobState.REQUESTED_FOR_PROCESSING

    clock.advance(60)
    ext = fp.jobs.extend(FACTORY, guid, job["lease"])
    assert ext["cancelled"] is False
    assert str(ext["leaseExpires"]) == "20260101T12:06:00"
    assert job_row(rt, guid).state == JobState.PROCESSING

    result = fp.jobs.finish(FACTORY, guid, "pdf", xmlrpc.client.Binary(b"%PDF-1.7 result"), job["lease"])
    row = job_row(rt, guid)
    assert row.state == JobState.COMPLETE
    with rt.db.read_session() as s:
        res = s.scalar(select(Result).where(Result.job_id == row.id))
        assert res.guid == result and res.format == "pdf"
        assert read_blob(s, res.blob_id) == b"%PDF-1.7 result"


def test_finish_accepts_base64_text_in_a_string_and_no_lease(live_server, client_id, fp):
    _, guid = submit_job(live_server.runtime, client_id, fmt="")
    fp.jobs.poll(FACTORY)
    # The seed's style: base64 in a <string>, with line breaks; no lease argument (identity only).
    fp.jobs.finish(FACTORY, guid, "png", "iVBORw0K\nGgo=\n")
    with live_server.runtime.db.read_session() as s:
        res = s.scalar(select(Result).join(Job, Job.id == Result.job_id).where(Job.guid == guid))
        assert read_blob(s, res.blob_id) == b"\x89PNG\r\n\x1a\n"


def test_fail_requeues_then_fails_with_the_reason(live_server, client_id, fp):
    rt = live_server.runtime
    _, guid = submit_job(rt, client_id)
    for attempt in (1, 2, 3):
        job = fp.jobs.poll(FACTORY)
        assert job["job"] == guid and job["attempt"] == attempt
        out = fp.jobs.fail(FACTORY, guid, f"soffice crashed #{attempt}", job["lease"])
        assert out == {"jobStatus": int(JobState.QUEUED if attempt < 3 else JobState.FAILED)}
    row = job_row(rt, guid)
    assert row.state == JobState.FAILED and row.failure_reason == "soffice crashed #3" and row.attempts == 3
    assert fp.jobs.poll(FACTORY) == {}


def test_introspection_and_multicall(live_server, client_id, fp):
    assert fp.system.listMethods() == [
        "jobs.extend", "jobs.fail", "jobs.finish", "jobs.poll",
        "system.listMethods", "system.methodHelp", "system.methodSignature", "system.multicall",
    ]
    assert fp.system.methodSignature("jobs.extend") == [["struct", "string", "string"], ["struct", "string", "string", "string"]]
    assert fp.system.methodHelp("jobs.poll").startswith("jobs.poll(factory_name) -> struct")
    _, guid = submit_job(live_server.runtime, client_id)
    mc = xmlrpc.client.MultiCall(fp)
    mc.jobs.poll(FACTORY)
    mc.jobs.fail(FACTORY, "no-such-job", "x")
    mc.system.multicall([])
    results = mc()
    assert results[0]["job"] == guid and results[0]["document"] == "UEsgZmFrZSBvZHQgYnl0ZXM="
    with pytest.raises(xmlrpc.client.Fault) as info:
        results[1]
    assert info.value.faultCode == 404
    with pytest.raises(xmlrpc.client.Fault) as info:
        results[2]
    assert info.value.faultCode == 400 and "nested" in info.value.faultString


# ------------------------------------------------------------------ faults


def test_400_bad_arguments(live_server, client_id, fp):
    _, guid = submit_job(live_server.runtime, client_id, fmt="pdf")
    job = fp.jobs.poll(FACTORY)
    f = fault_of(fp.jobs.poll)
    assert f.faultCode == 400 and "jobs.poll(factory_name) takes 1 argument, got 0" in f.faultString
    f = fault_of(fp.jobs.poll, 42)
    assert f.faultCode == 400 and "factory_name" in f.faultString and "got int" in f.faultString
    f = fault_of(fp.jobs.finish, FACTORY, guid, "pdf")
    assert f.faultCode == 400 and "4 to 5 arguments" in f.faultString
    f = fault_of(fp.jobs.finish, FACTORY, guid, "pdf", 7)
    assert f.faultCode == 400 and "document" in f.faultString
    f = fault_of(fp.jobs.finish, FACTORY, guid, "pdf", "not base64!", job["lease"])
    assert f.faultCode == 400 and "base64" in f.faultString
    f = fault_of(fp.jobs.finish, FACTORY, guid, "png", "UEs=", job["lease"])  # the job asks for pdf
    assert f.faultCode == 400 and "format" in f.faultString
    f = fault_of(fp.jobs.finish, FACTORY, guid, "pdf", "", job["lease"])
    assert f.faultCode == 400 and "empty" in f.faultString
    f = fault_of(fp.jobs.nosuch, FACTORY)
    assert f.faultCode == 400 and "unknown method" in f.faultString
    # Nothing changed: the lease still holds and the job finishes.
    assert fp.jobs.finish(FACTORY, guid, "pdf", "UEs=", job["lease"])
    status, _, body = raw_post(live_server.url, b"<methodCall><methodName>jobs.poll</methodName><params>", {"Authorization": basic()})
    assert status == 200
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc.client.loads(body)
    assert info.value.faultCode == 400 and "malformed XML" in info.value.faultString


def test_401_wrong_secret_unknown_factory_name_mismatch_and_no_credentials(live_server, factory):
    url = live_server.url
    assert fault_of(proxy(url, FACTORY, "wrong").jobs.poll, FACTORY).faultCode == 401
    assert fault_of(proxy(url, "nobody", SECRET).jobs.poll, "nobody").faultCode == 401
    add_factory(live_server.runtime, "other", "other-secret")
    f = fault_of(proxy(url, "other", "other-secret").jobs.poll, FACTORY)
    assert f.faultCode == 401 and "does not match" in f.faultString
    # No credentials at all: HTTP 401 + WWW-Authenticate (stock clients can prompt); body is the fault.
    with pytest.raises(xmlrpc.client.ProtocolError) as info:
        xmlrpc.client.ServerProxy(url + "/xmlrpc").jobs.poll(FACTORY)
    assert info.value.errcode == 401 and info.value.headers["WWW-Authenticate"].startswith("Basic")
    status, headers, body = raw_post(url, call_body("jobs.poll", FACTORY))
    assert status == 401 and headers["www-authenticate"].startswith("Basic realm=")
    with pytest.raises(xmlrpc.client.Fault) as finfo:
        xmlrpc.client.loads(body)
    assert finfo.value.faultCode == 401


def test_403_disabled_factory(live_server, factory, fp):
    rt = live_server.runtime
    with rt.db.session() as s:
        s.execute(Factory.__table__.update().where(Factory.name == FACTORY).values(disabled=True))
    rt.auth.clear()
    f = fault_of(fp.jobs.poll, FACTORY)
    assert f.faultCode == 403 and "disabled" in f.faultString


def test_404_unknown_job(fp):
    for fn, args in [(fp.jobs.finish, ("pdf", "UEs=")), (fp.jobs.extend, ()), (fp.jobs.fail, ("r",))]:
        f = fault_of(fn, FACTORY, "4975c9c6-79a0-43a1-8134-0ba5c0a80105", *args)
        assert f.faultCode == 404 and "unknown job" in f.faultString


def test_409_lease_not_held(live_server, client_id, fp):
    _, guid = submit_job(live_server.runtime, client_id)
    job = fp.jobs.poll(FACTORY)
    f = fault_of(fp.jobs.extend, FACTORY, guid, "0" * 32)
    assert f.faultCode == 409 and "not held" in f.faultString
    assert fp.jobs.extend(FACTORY, guid, job["lease"])["cancelled"] is False  # the real token still works


def test_413_body_over_the_cap_and_document_over_the_limit(make_runtime, clock):
    rt = make_runtime(broker=False, max_document_bytes=1024)
    srv = start_server(rt)
    try:
        cid = add_client(rt)
        add_factory(rt, FACTORY, SECRET)
        _, guid = submit_job(rt, cid, b"x" * 1000)
        fp = proxy(srv.url)
        job = fp.jobs.poll(FACTORY)
        # Decoded document larger than max_document_bytes (the body itself is under the cap).
        f = fault_of(fp.jobs.finish, FACTORY, guid, "pdf", xmlrpc.client.Binary(b"y" * 2000), job["lease"])
        assert f.faultCode == 413
        # Body larger than max_request_bytes: refused before it is parsed.
        f = fault_of(fp.jobs.finish, FACTORY, guid, "pdf", "A" * (rt.settings.max_request_bytes + 10), job["lease"])
        assert f.faultCode == 413 and "limit" in f.faultString
        assert job_row(rt, guid).state == JobState.REQUESTED_FOR_PROCESSING
        assert fp.jobs.finish(FACTORY, guid, "pdf", xmlrpc.client.Binary(b"y" * 1000), job["lease"])
    finally:
        srv.stop()


def test_503_database_unreachable(make_runtime):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rt = make_runtime(broker=False, database_url=f"postgresql+psycopg://postgres@127.0.0.1:{port}/convhub")
    srv = start_server(rt)
    try:
        f = fault_of(proxy(srv.url).jobs.poll, FACTORY)
        assert f.faultCode == 503 and f.faultString == "database or broker unavailable, retry later"
    finally:
        srv.stop()


def test_500_internal_error_is_one_line_and_hides_the_cause(live_server, client_id, fp):
    rt = live_server.runtime
    submit_job(rt, client_id)
    rt.policy = None  # a deliberately broken runtime: the claim cannot make a lease
    f = fault_of(fp.jobs.poll, FACTORY)
    assert f.faultCode == 500 and f.faultString == "internal server error"


def test_413_without_content_length_chunked(live_server, factory):
    """A chunked body is counted as it is read."""
    import http.client

    cap = live_server.runtime.settings.max_request_bytes
    host, port = live_server.url.split("://")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    piece = b"A" * (1 << 20)
    body = iter([b"<methodCall><methodName>jobs.poll</methodName><params><param><value><string>"]
                + [piece] * (cap // len(piece) + 2))
    conn.request("POST", "/xmlrpc", body=body, headers={"Authorization": basic(), "Content-Type": "text/xml"}, encode_chunked=True)
    resp = conn.getresponse()
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc.client.loads(resp.read())
    assert info.value.faultCode == 413
    conn.close()
