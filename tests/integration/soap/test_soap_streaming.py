"""getContentConvertResult's streamed answer: byte for byte what spyne writes, and spyne for the rest."""

from __future__ import annotations

import base64
import io
import os
import re

import pytest
from werkzeug.test import Client

from app.services import leases, submission
from app.services.poll import poll
from protocol.soap import NS, RESULT_PART_BYTES, spyne_wsgi_app
from protocol.soap import operations as soap_operations
from protocol.soap.streaming import (
    NotPlain,
    StreamedResults,
    StreamedUploads,
    body_length,
    content_parts,
    credentials_first,
    parse_request,
    part_sizes,
    upload_fields,
)
from tests.conftest import add_client, add_factory, submit_job

ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def request(job_id: object, who: str = "petshow", secret: str = "Wf", *, qualified: bool = False, extra: str = "") -> bytes:
    p = "cs:" if qualified else ""
    return (
        f'<s:Envelope xmlns:s="{ENV}"><s:Body><cs:getContentConvertResultRequest xmlns:cs="{NS}">'
        f"<{p}clientApplicationId>{who}</{p}clientApplicationId>"
        f"<{p}clientApplicationCredentials>{secret}</{p}clientApplicationCredentials>"
        f"<{p}jobId>{job_id}</{p}jobId>{extra}</cs:getContentConvertResultRequest></s:Body></s:Envelope>"
    ).encode()


class Counted:
    """The spyne app, counting the requests that reach it (the streamed path must not)."""

    def __init__(self, app):  # type: ignore[no-untyped-def]
        self.app, self.calls = app, 0

    def __call__(self, environ, start_response):  # type: ignore[no-untyped-def]
        self.calls += 1
        return self.app(environ, start_response)


@pytest.fixture
def apps(runtime):  # type: ignore[no-untyped-def]
    runtime.petshow = add_client(runtime)
    add_client(runtime, "other", "other-secret")
    add_factory(runtime)
    spyne = spyne_wsgi_app(runtime)
    runtime.behind = Counted(spyne)
    return runtime, Client(spyne), Client(StreamedResults(runtime.behind, runtime, 7))


def finished(rt, data: bytes, filename: str = "a&b <x>.odt") -> int:  # type: ignore[no-untyped-def]
    job_id, _ = submit_job(rt, rt.petshow, filename=filename)
    with rt.db.read_session() as s:
        factory = rt.auth.factory(s, "factory-1", "factory-secret-1", rt.now())
    claimed = poll(rt.db, rt.now(), rt.policy, rt.mirror, factory)
    assert claimed is not None and claimed.id == job_id
    with rt.db.session() as s:
        leases.finish(
            s, rt.now(), rt.notifier, guid=claimed.guid, owner="factory-1", token=claimed.lease_token, fmt="pdf",
            parts=data, max_bytes=10**7,
        )
    return job_id


def post(client: Client, body: bytes):  # type: ignore[no-untyped-def]
    return client.post("/", data=body, headers={"Content-Type": "text/xml; charset=utf-8"})


@pytest.mark.parametrize("size", [1, 6, 7, 8, 20, 21, 3 * 1024 * 1024 + 5])  # finish refuses empty results
def test_streamed_answer_is_byte_for_byte_spynes(apps, monkeypatch, size):
    rt, spyne, streamed = apps
    monkeypatch.setattr(soap_operations, "RESULT_PART_BYTES", 7)  # spyne's parts as small as the stream's
    data = os.urandom(size)
    job_id = finished(rt, data)
    for qualified in (False, True):
        want, got = post(spyne, request(job_id, qualified=qualified)), post(streamed, request(job_id, qualified=qualified))
        assert want.status_code == got.status_code == 200
        assert got.get_data() == want.get_data()
        assert int(got.headers["Content-Length"]) == len(got.get_data())
        assert got.get_data().count(b"<content>") == len(part_sizes(size, 7))
    assert rt.behind.calls == 0  # answered by the stream, not by spyne


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (request("{job}", secret="wrong"), b"<status>501</status>"),
        (request("{job}", who="nobody"), b"<status>501</status>"),
        (request("{job}", who="other", secret="other-secret"), b"<status>532</status>"),
        (request("424242"), b"<status>508</status>"),
        (request("{queued}"), b"<status>518</status>"),
        (request("{job}", extra="<jobId>1</jobId>"), b"Fault"),  # not a valid request: spyne's Fault
        (request("12abc"), b"Fault"),
        (b'<!DOCTYPE x [<!ENTITY a "b">]>' + request("{job}"), b"DTDNotAllowed"),
        (b"<not xml", b"Fault"),
    ],
)
def test_everything_but_success_is_spynes_answer(apps, body, status):
    rt, spyne, streamed = apps
    job = finished(rt, b"%PDF result")
    queued, _ = submit_job(rt, rt.petshow)
    body = body.replace(b"{job}", str(job).encode()).replace(b"{queued}", str(queued).encode())
    want, got = post(spyne, body), post(streamed, body)
    assert status in got.get_data()
    assert (got.status_code, got.get_data()) == (want.status_code, want.get_data())
    assert rt.behind.calls == 1  # spyne answered


def test_a_result_purged_while_streaming_cuts_the_response_short(apps):
    from app.db.blobs import BlobGone
    from app.services.maintenance import remove_jobs

    rt, _, _ = apps
    job_id = finished(rt, os.urandom(3 * 1024 * 1024))  # three 1 MiB chunks
    app = StreamedResults(spyne_wsgi_app(rt), rt, RESULT_PART_BYTES)
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_LENGTH": str(len(request(job_id))),
        "wsgi.input": io.BytesIO(request(job_id)),
    }
    headers: list[tuple[str, str]] = []
    it = iter(app(environ, lambda status, h: headers.extend(h)))
    assert next(it).startswith(b"<?xml")  # the head is out, the bytes are not
    with rt.db.session() as s:
        remove_jobs(s, [job_id])
    with pytest.raises(BlobGone):
        b"".join(it)


def test_parse_request_takes_only_the_plain_shape():
    assert parse_request(request(5)) == ("petshow", "Wf", 5)
    assert parse_request(request(" 5 ", qualified=True)) == ("petshow", "Wf", 5)
    assert parse_request(request(2**63)) is None  # out of xsd:long: spyne answers
    assert parse_request(request(5).replace(b"getContentConvertResultRequest", b"getContentConvertStatusRequest")) is None
    assert parse_request(request(5, extra="<more/>")) is None


def test_content_parts_and_length_agree():
    data = os.urandom(100)
    head = b"<h>"
    for part in (3, 6, 7, 100, 1000):
        body = b"".join(content_parts([data[:40], data[40:41], data[41:]], part))
        assert len(head) + len(body) + len(b"</tns:getContentConvertResultResponse></soap11env:Body></soap11env:Envelope>") == body_length(
            head, len(data), part
        )
        assert body.count(b"<content>") == len(part_sizes(len(data), part))


# ------------------------------------------------------------------ contentUpload


def upload_body(parts: list[bytes], filename: str = "big.odt", who: str = "petshow", secret: str = "Wf", *,
                qualified: bool = False, head: str = "", order: str = "ICBF") -> bytes:
    p = "cs:" if qualified else ""
    pieces = {
        "I": f"<{p}clientApplicationId>{who}</{p}clientApplicationId>",
        "C": f"<{p}clientApplicationCredentials>{secret}</{p}clientApplicationCredentials>",
        "B": "".join(f"<{p}content>{base64.b64encode(x).decode()}</{p}content>" for x in parts),
        "F": f"<{p}filename>{filename}</{p}filename>",
    }
    return (
        f'<s:Envelope xmlns:s="{ENV}">{head}<s:Body><cs:contentUploadRequest xmlns:cs="{NS}">'
        + "".join(pieces[c] for c in order)
        + "</cs:contentUploadRequest></s:Body></s:Envelope>"
    ).encode()


@pytest.fixture
def uploads(runtime):  # type: ignore[no-untyped-def]
    runtime.petshow = add_client(runtime)
    spyne = spyne_wsgi_app(runtime)
    runtime.behind = Counted(spyne)
    return runtime, Client(spyne), Client(StreamedUploads(runtime.behind, runtime, threshold=0))


def stored(rt, identifier: str) -> bytes:  # type: ignore[no-untyped-def]
    from app.db.blobs import read_blob

    with rt.db.read_session() as s:
        return read_blob(s, submission.find_content(s, rt.petshow, identifier).blob_id)


def uploads_in_db(rt) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import func, select

    from app.db.models import Content

    with rt.db.read_session() as s:
        return s.scalar(select(func.count()).select_from(Content)) or 0


@pytest.mark.parametrize("qualified", [False, True])
def test_streamed_upload_answers_as_spyne_and_stores_the_same_bytes(uploads, qualified):
    rt, spyne, streamed = uploads
    doc = os.urandom(3 * 1024 * 1024 + 7)
    body = upload_body([doc[:1_000_001], doc[1_000_001:2_000_000], doc[2_000_000:]], qualified=qualified)
    want, got = post(spyne, body), post(streamed, body)
    assert want.status_code == got.status_code == 200
    ident = got.get_data().split(b"<contentIdentifier>")[1].split(b"</contentIdentifier>")[0]
    other = want.get_data().split(b"<contentIdentifier>")[1].split(b"</contentIdentifier>")[0]
    assert got.get_data().replace(ident, other) == want.get_data()
    assert int(got.headers["Content-Length"]) == len(got.get_data())
    assert stored(rt, ident.decode()) == stored(rt, other.decode()) == doc
    assert rt.behind.calls == 0  # stored by the stream, not by spyne


@pytest.mark.parametrize(
    ("body", "expect"),
    [
        (upload_body([b"PK doc"], secret="wrong"), b"<status>501</status>"),
        (upload_body([b"PK doc"], who="nobody"), b"<status>501</status>"),
        (upload_body([b"PK doc"], filename="doc.txt"), b"<status>599</status>"),
        (upload_body([b""]), b"<status>599</status>"),
        (upload_body([b"PK doc"]).replace(b"UEsgZG9j", b"UEsgZG9"), b"Fault"),  # bad base64 padding
        (upload_body([b"PK doc"], head='<s:Header><x xmlns="urn:x"/></s:Header>'), b"<status>200</status>"),
        (upload_body([b"PK doc"], order="CIBF"), b"<status>200</status>"),  # spyne's soft validation takes it
        (upload_body([b"PK doc"], order="ICBFF"), b"Fault"),
        (b'<!DOCTYPE x [<!ENTITY a "b">]>' + upload_body([b"PK doc"]), b"DTDNotAllowed"),
        (upload_body([b"PK doc"])[:-20], b"Fault"),  # not well-formed
        (request(1), b"<status>"),  # another operation: spyne's
    ],
)
def test_every_other_upload_is_spynes_answer(uploads, body, expect):
    rt, spyne, streamed = uploads
    before = uploads_in_db(rt)
    want = post(spyne, body)
    after_spyne = uploads_in_db(rt)
    got = post(streamed, body)
    assert expect in got.get_data()
    mask = lambda b: re.sub(rb"<contentIdentifier>[^<]*</contentIdentifier>", b"<contentIdentifier/>", b)  # noqa: E731
    assert (got.status_code, mask(got.get_data())) == (want.status_code, mask(want.get_data()))
    assert uploads_in_db(rt) - after_spyne == after_spyne - before  # the same effect: stored once or never
    # Wrong credentials at the start of the body are refused before anything is spooled or parsed;
    # everything else is spyne's answer.
    assert rt.behind.calls == (0 if expect == b"<status>501</status>" else 1)


def test_too_large_upload_is_refused_and_stores_nothing(make_runtime):
    rt = make_runtime(broker=False, max_document_bytes=2 * 1024 * 1024)
    rt.petshow = add_client(rt)
    streamed = Client(StreamedUploads(spyne_wsgi_app(rt), rt, threshold=0))
    body = upload_body([os.urandom(1024 * 1024 + 1)] * 2)
    before = uploads_in_db(rt)
    got = post(streamed, body)
    assert b"<status>599</status>" in got.get_data() and b"limit" in got.get_data()
    assert uploads_in_db(rt) == before


def test_a_body_cut_short_is_spynes_fault(uploads):
    rt, _, _ = uploads
    body = upload_body([os.urandom(100_000)])
    app = StreamedUploads(spyne_wsgi_app(rt), rt, threshold=0)
    environ = {
        "REQUEST_METHOD": "POST",
        "CONTENT_LENGTH": str(len(body) + 1000),  # the client promised more than it sent
        "CONTENT_TYPE": "text/xml",
        "wsgi.input": io.BytesIO(body),
        "SERVER_NAME": "x", "SERVER_PORT": "80", "wsgi.url_scheme": "http", "PATH_INFO": "/",
    }
    status: list[str] = []
    out = b"".join(app(environ, lambda st, h, *a: status.append(st)))
    assert status == ["500 Internal Server Error"]  # SOAP 1.1 carries Faults with HTTP 500
    assert b"<faultcode>soap11env:Client</faultcode>" in out and b"request body ended after" in out
    assert uploads_in_db(rt) == 0


def test_upload_fields_streams_and_refuses_other_shapes():
    doc = b"PK doc"
    assert list(upload_fields(io.BytesIO(upload_body([doc, doc])))) == [
        ("clientApplicationId", "petshow"),
        ("clientApplicationCredentials", "Wf"),
        ("content", base64.b64encode(doc).decode()),
        ("content", base64.b64encode(doc).decode()),
        ("filename", "big.odt"),
    ]
    nested = upload_body([doc]).replace(b"<filename>big.odt</filename>", b"<filename><b>x</b></filename>")
    with pytest.raises(NotPlain):
        list(upload_fields(io.BytesIO(nested)))


def test_wrong_credentials_on_a_large_upload_are_refused_before_spooling(uploads, monkeypatch):
    from protocol.soap import streaming as soap_streaming

    rt, spyne, streamed = uploads

    def no_spool(*a, **kw):  # type: ignore[no-untyped-def]
        raise AssertionError("spooled a body whose credentials were wrong")

    monkeypatch.setattr(soap_streaming.tempfile, "TemporaryFile", no_spool)
    body = upload_body([os.urandom(3 * 1024 * 1024)], secret="wrong")
    got = post(streamed, body)
    assert b"<status>501</status><statusMessage>authentication failed</statusMessage>" in got.get_data()
    assert rt.behind.calls == 0 and uploads_in_db(rt) == 0


def test_credentials_first_reads_only_the_opening_of_the_body():
    body = upload_body([os.urandom(200_000)])
    assert credentials_first(body[:2000]) == ("petshow", "Wf")  # the rest has not arrived
    assert credentials_first(upload_body([b"PK"], order="CIBF")) is None  # not the plain order
    assert credentials_first(upload_body([b"PK"], order="IBCF")) is None
    assert credentials_first(b'<!DOCTYPE x [<!ENTITY a "b">]>' + body[:2000]) is None
    assert credentials_first(body[:60]) is None  # not even the first field yet
