"""requestId [ext] on contentUpload and contentConvert: a retry answers the first call's result and
creates nothing; concurrent duplicates create one; another request under the same id is refused;
ids are per client and expire with retention. On SQLite and PostgreSQL, over a live socket."""

from __future__ import annotations

import base64
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from app.db.models import Content, Job, RequestId
from app.services import maintenance
from tests.conftest import add_client, add_factory, start_server
from tests.integration.soap.soapkit import call

WRITER = [("application", "LibreOffice Writer"), ("version", "7.4"), ("format", "pdf")]


@pytest.fixture
def server(make_runtime):  # type: ignore[no-untyped-def]
    """SQLite; the tests that race (and the basic retry) also run on PostgreSQL (`server_any`)."""
    yield from _server(make_runtime())


@pytest.fixture
def server_any(make_runtime, any_db_url):  # type: ignore[no-untyped-def]
    yield from _server(make_runtime(database_url=any_db_url))


def _server(rt):  # type: ignore[no-untyped-def]
    add_client(rt)
    add_client(rt, "other", "other-secret")
    add_factory(rt)
    srv = start_server(rt)
    yield srv
    srv.stop()


def count(rt, model) -> int:  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def upload(srv, data: bytes = b"PK doc", rid: str | None = None, filename: str = "a.odt", **kw):  # type: ignore[no-untyped-def]
    fields: list[tuple[str, object]] = [("content", base64.b64encode(data).decode()), ("filename", filename)]
    if rid is not None:
        fields.append(("requestId", rid))
    return call(srv, "contentUpload", fields, **kw)


def convert(srv, ident: str, rid: str | None = None, extra=(), **kw):  # type: ignore[no-untyped-def]
    fields: list[tuple[str, object]] = [("contentIdentifier", ident), *WRITER, *extra]
    if rid is not None:
        fields.append(("requestId", rid))
    return call(srv, "contentConvert", fields, **kw)


def test_a_retried_upload_answers_the_first_identifier(server):
    rt = server.runtime
    first = upload(server, rid="up-1")
    again = upload(server, rid="up-1")
    assert first.status == again.status == 200
    assert again.get("contentIdentifier") == first.get("contentIdentifier")
    assert count(rt, Content) == 1
    assert upload(server).status == 200 and upload(server).status == 200  # no id: each call uploads
    assert count(rt, Content) == 3


def test_a_retried_convert_answers_the_first_job_and_queues_once(server_any):
    server = server_any
    rt = server.runtime
    ident = upload(server).get("contentIdentifier")
    first = convert(server, ident, "job-1")
    again = convert(server, ident, "job-1")
    assert first.status == again.status == 200
    assert first.get("jobId") == again.get("jobId")
    assert count(rt, Job) == 1
    assert convert(server, ident, "job-2").get("jobId") != first.get("jobId")
    assert count(rt, Job) == 2


def test_the_same_id_with_another_request_is_refused_and_creates_nothing(server):
    rt = server.runtime
    ident = upload(server, rid="r").get("contentIdentifier")
    other = upload(server, b"PK another document", rid="r")
    assert other.status == 599 and "requestId 'r' was already used" in other.get("statusMessage")
    assert upload(server, rid="r", filename="b.odt").status == 599
    assert count(rt, Content) == 1
    assert convert(server, ident, "c").status == 200
    changed = convert(server, ident, "c", extra=[("pageStart", 2)])
    assert changed.status == 599 and "different contentConvert request" in changed.get("statusMessage")
    assert count(rt, Job) == 1
    # The operations keep separate ids: "r" on contentConvert is new.
    assert convert(server, ident, "r").status == 200


def test_a_failed_call_is_not_remembered(server):
    rt = server.runtime
    ident = upload(server).get("contentIdentifier")
    refused = convert(server, ident, "x", extra=[("pageStart", 9), ("pageEnd", 2)])
    assert refused.status == 599
    assert count(rt, RequestId) == 0
    assert convert(server, ident, "x").status == 200  # the corrected retry runs


def test_different_clients_may_use_the_same_id(server):
    rt = server.runtime
    mine = upload(server, rid="shared")
    theirs = upload(server, rid="shared", client="other", secret="other-secret")
    assert mine.status == theirs.status == 200
    assert mine.get("contentIdentifier") != theirs.get("contentIdentifier")
    j1 = convert(server, mine.get("contentIdentifier"), "shared")
    j2 = convert(server, theirs.get("contentIdentifier"), "shared", client="other", secret="other-secret")
    assert j1.get("jobId") != j2.get("jobId")
    assert count(rt, Job) == 2


def test_concurrent_duplicates_create_one(server_any):
    server = server_any
    rt = server.runtime
    ident = upload(server).get("contentIdentifier")
    answers: list[tuple[int, str | None]] = []
    uploads: list[tuple[int, str | None]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        r = convert(server, ident, "burst")
        u = upload(server, b"PK burst", rid="burst-up")
        with lock:
            answers.append((r.status, r.get("jobId")))
            uploads.append((u.status, u.get("contentIdentifier")))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(answers) == len(uploads) == 8
    assert {a for a in answers} == {(200, answers[0][1])}
    assert {u for u in uploads} == {(200, uploads[0][1])}
    assert count(rt, Job) == 1
    assert count(rt, Content) == 2  # the first upload and one "burst-up"


def test_a_large_streamed_upload_is_retried_once(server):
    rt = server.runtime
    data = b"PK" + bytes(range(256)) * 6000  # over 1 MiB once in base64: the streamed path
    first = upload(server, data, rid="big")
    again = upload(server, data, rid="big")
    assert first.status == again.status == 200
    assert first.get("contentIdentifier") == again.get("contentIdentifier")
    assert count(rt, Content) == 1
    changed = upload(server, data + b"!", rid="big")
    assert changed.status == 599 and "already used" in changed.get("statusMessage")
    assert count(rt, Content) == 1


def test_ids_expire_with_retention(server, clock):
    rt = server.runtime
    ident = upload(server).get("contentIdentifier")
    first = convert(server, ident, "old").get("jobId")
    assert count(rt, RequestId) == 1
    clock.advance(timedelta(days=rt.settings.retention_days + 1).total_seconds())
    with rt.db.session() as s:
        maintenance.retention_purge(s, rt.now(), rt.settings.retention_days)
    assert count(rt, RequestId) == 0
    ident = upload(server).get("contentIdentifier")
    assert convert(server, ident, "old").get("jobId") != first


@pytest.mark.parametrize("rid, ok", [("   ", True), ("x" * 100, True), ("x" * 101, False), ("a\tb", False), ("", False)])
def test_request_id_text(server, rid, ok):
    r = upload(server, rid=rid)
    if rid == "":  # an empty element, as for every other field: a Client fault
        assert r.is_fault and "Client" in r.body.findtext("faultcode")
    else:
        assert (r.status == 200) is ok, r.get("statusMessage")
    assert count(server.runtime, Content) == int(ok)
