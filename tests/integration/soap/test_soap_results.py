"""getContentConvertResult's streamed answer: byte for byte what spyne writes, and spyne for the rest."""

from __future__ import annotations

import io
import os

import pytest
from werkzeug.test import Client

from app.services import jobs
from app.services.poll import poll
from protocol import soap as soap_module
from protocol.soap import NS, RESULT_PART_BYTES, spyne_wsgi_app
from protocol.soap_results import StreamedResults, body_length, content_parts, parse_request, part_sizes
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


@pytest.fixture
def apps(runtime):  # type: ignore[no-untyped-def]
    runtime.petshow = add_client(runtime)
    add_client(runtime, "other", "other-secret")
    add_factory(runtime)
    spyne = spyne_wsgi_app(runtime)
    return runtime, Client(spyne), Client(StreamedResults(spyne, runtime, 7))


def finished(rt, data: bytes, filename: str = "a&b <x>.odt") -> int:  # type: ignore[no-untyped-def]
    job_id, _ = submit_job(rt, rt.petshow, filename=filename)
    with rt.db.read_session() as s:
        factory = rt.auth.factory(s, "factory-1", "factory-secret-1", rt.now())
    claimed = poll(rt.db, rt.now(), rt.policy, rt.mirror, factory)
    assert claimed is not None and claimed.id == job_id
    with rt.db.session() as s:
        jobs.finish(
            s, rt.now(), rt.notifier, guid=claimed.guid, owner="factory-1", token=claimed.lease_token, fmt="pdf",
            parts=data, max_bytes=10**7,
        )
    return job_id


def post(client: Client, body: bytes):  # type: ignore[no-untyped-def]
    return client.post("/", data=body, headers={"Content-Type": "text/xml; charset=utf-8"})


@pytest.mark.parametrize("size", [1, 6, 7, 8, 20, 21, 3 * 1024 * 1024 + 5])  # finish refuses empty results
def test_streamed_answer_is_byte_for_byte_spynes(apps, monkeypatch, size):
    rt, spyne, streamed = apps
    monkeypatch.setattr(soap_module, "RESULT_PART_BYTES", 7)  # spyne's parts as small as the stream's
    data = os.urandom(size)
    job_id = finished(rt, data)
    for qualified in (False, True):
        want, got = post(spyne, request(job_id, qualified=qualified)), post(streamed, request(job_id, qualified=qualified))
        assert want.status_code == got.status_code == 200
        assert got.get_data() == want.get_data()
        assert int(got.headers["Content-Length"]) == len(got.get_data())
        assert got.get_data().count(b"<content>") == len(part_sizes(size, 7))


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


def test_a_result_purged_while_streaming_cuts_the_response_short(apps):
    from app.db.blobs import BlobGone
    from app.services.jobs import remove_jobs

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
