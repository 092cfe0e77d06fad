"""Regression tests of the defects the hostile corpus (tests/hostile/) found in the SOAP adapter."""

from __future__ import annotations

import socket

import requests

from protocol.soap import PATH
from tests.integration.soap.soapkit import call, envelope, post


def _fault_code(reply) -> str:  # type: ignore[no-untyped-def]
    assert reply.is_fault, reply.text[:300]
    return reply.body.findtext("faultcode")


def _job(soap) -> int:  # type: ignore[no-untyped-def]
    from tests.conftest import submit_job

    return submit_job(soap.runtime, 1)[0]


def test_a_date_with_trailing_text_is_not_read_as_its_prefix(soap):
    job = _job(soap)
    reply = call(soap, "deleteContentConversions", [("deleteFrom", "1970-01-01T00:00:00Z'; DROP TABLE jobs;--")])
    assert "Client" in _fault_code(reply)
    assert call(soap, "getContentConvertStatus", [("jobId", job)]).status == 200  # not deleted


def test_a_body_with_two_operations_or_none_is_a_client_fault(soap):
    job = _job(soap)
    one = envelope("deleteContentConversion", [("jobId", job)])
    request = one[one.index("<ns2:") : one.index("</soap:Body>")]
    two = one.replace("</soap:Body>", request + "</soap:Body>")
    assert "BadBody" in _fault_code(post(soap, two))
    assert call(soap, "getContentConvertStatus", [("jobId", job)]).status == 200
    empty = envelope("getContentConvertCounts").split("<soap:Body>")[0] + "<soap:Body/></soap:Envelope>"
    assert "BadBody" in _fault_code(post(soap, empty))


def test_a_soap_action_naming_another_operation_is_refused(soap):
    job = _job(soap)
    body = envelope("deleteContentConversion", [("jobId", job)]).encode()
    headers = {"Content-Type": "text/xml; charset=utf-8"}
    r = requests.post(soap.url + PATH, data=body, headers={**headers, "SOAPAction": '"getContentConvertCounts"'}, timeout=10)
    assert r.status_code == 500 and b"SOAPActionMismatch" in r.content
    ok = requests.post(soap.url + PATH, data=body, headers={**headers, "SOAPAction": f'"{NS_ACTION}deleteContentConversion"'}, timeout=10)
    assert ok.status_code == 200 and b"<status>200</status>" in ok.content


NS_ACTION = "http://www.yospace.com/tundra/ContentService/"


def _raw(soap, data: bytes) -> bytes:  # type: ignore[no-untyped-def]
    host, port = soap.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def test_a_body_shorter_than_its_content_length_is_not_parsed(soap):
    import base64

    from sqlalchemy import func, select

    from app.db.models import Content

    body = envelope("contentUpload", [("content", base64.b64encode(b"PK" * 1000).decode()), ("filename", "a.odt")]).encode()
    head = f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\nContent-Length: {len(body) + 100}\r\nConnection: close\r\n\r\n"
    answer = _raw(soap, head.encode() + body)
    assert b"BadBody" in answer and b"ended after" in answer
    with soap.runtime.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Content)) == 0


def test_broken_chunking_negative_length_and_invalid_utf8_are_client_faults(soap, caplog):
    good = envelope("getContentConvertCounts").encode()
    for data in (
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".encode(),
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\nConnection: close\r\n\r\n".encode() + good,
    ):
        answer = _raw(soap, data)
        assert b"<faultcode>soap11env:Client" in answer, answer[:400]
    reply = post(soap, envelope("getContentConvertCounts").encode().replace(b"petshow", b"pet\xff\xfeshow"))
    assert "Client" in _fault_code(reply)
    assert not [r for r in caplog.records if r.exc_info]


def test_chunked_body_of_no_chunks_is_a_client_fault(soap, caplog):
    """Found running the corpus against `convhub web`: granian ends a chunked body whose framing is
    broken as if it were empty, and spyne's parser raised StopIteration on no body at all (a Server
    fault and a traceback). An empty chunked body is the same request."""
    data = (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\nTransfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n0\r\n\r\n").encode()
    answer = _raw(soap, data)
    assert b"<faultcode>soap11env:Client" in answer and b"empty request" in answer, answer[:400]
    assert not [r for r in caplog.records if r.exc_info]


def test_fault_strings_and_messages_are_one_short_line(soap):
    long_value = "9" * 5000
    fault = call(soap, "getContentConvertStatus", [("jobId", long_value)])
    text = fault.body.findtext("faultstring")
    assert "\n" not in text and len(text) <= 300
    syntax = post(soap, envelope("getContentConvertCounts").replace("petshow", "pet&#0;show"))
    assert "\n" not in syntax.body.findtext("faultstring")
    status = call(soap, "contentConvert", [("contentIdentifier", "x\n" * 1000), ("application", "a"), ("version", "b")])
    message = status.get("statusMessage")
    assert status.status == 599 and "\n" not in message and len(message) <= 300
