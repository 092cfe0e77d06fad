"""Hostile and malformed XML: a SOAP Fault, quickly, no entity expanded or file read; the server
keeps serving. Valid requests in either child style are accepted."""

from __future__ import annotations

import pytest
import requests

from protocol.soap import NS, PATH
from tests.integration.soap.soapkit import call, envelope, post

BOMB = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10)
    )
    + "]>\n"
)


def _with_doctype(doctype: str, value: str) -> str:
    return doctype + envelope("getContentConvertCounts", client=value)


def _fault(reply, code_part: str = "Client") -> str:  # type: ignore[no-untyped-def]
    assert reply.is_fault, reply.text[:300]
    assert reply.http == 500
    code = reply.body.findtext("faultcode")
    assert code_part in code, code
    text = reply.body.findtext("faultstring") or ""
    assert "Traceback" not in reply.text and "sqlalchemy" not in reply.text.lower()
    return text


def _still_serving(soap) -> None:  # type: ignore[no-untyped-def]
    r = call(soap, "getContentConvertCounts")
    assert r.http == 200 and r.status == 200


def test_billion_laughs_is_refused_quickly(soap):
    # How quickly: bench/bench_timeouts.py (soap_billion_laughs).
    reply = post(soap, _with_doctype(BOMB, "&lol9;"))
    _fault(reply)
    _still_serving(soap)


def test_external_file_entity_is_never_read(soap, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENTS")
    doctype = f'<?xml version="1.0"?>\n<!DOCTYPE x [ <!ENTITY xxe SYSTEM "file://{secret}"> ]>\n'
    reply = post(soap, _with_doctype(doctype, "&xxe;"))
    _fault(reply)
    assert "TOP-SECRET" not in reply.text
    _still_serving(soap)


def test_external_dtd_and_network_entity_refused(soap):
    doctype = '<?xml version="1.0"?>\n<!DOCTYPE x SYSTEM "http://127.0.0.1:9/evil.dtd">\n'
    reply = post(soap, _with_doctype(doctype, "petshow"))
    assert "document type declaration" in _fault(reply)
    _still_serving(soap)


def test_oversized_body_is_refused_before_reading(soap):
    limit = soap.runtime.settings.max_request_bytes
    body = envelope("getContentConvertCounts").encode() + b" " * (limit + 1)
    reply = post(soap, body, timeout=60)  # how quickly: bench/bench_timeouts.py (soap_oversized_body)
    assert "exceeds" in _fault(reply, "RequestTooLong")
    _still_serving(soap)


def test_deeply_nested_xml_is_refused(soap):
    deep = "<a>" * 5000 + "</a>" * 5000
    reply = post(
        soap,
        envelope("getContentConvertCounts").replace(
            "</clientApplicationCredentials>", "</clientApplicationCredentials>" + deep
        ),
    )
    _fault(reply)
    _still_serving(soap)


@pytest.mark.parametrize(
    "xml, why",
    [
        ("<soap:Envelope", "syntax"),
        ("", "empty"),
        ("not xml at all", "syntax"),
        (
            envelope("getContentConvertCounts").replace(
                "getContentConvertCountsRequest", "getNothingRequest"
            ),
            "unknown operation",
        ),
        (envelope("deleteContentConversion"), "missing jobId"),
        (envelope("deleteContentConversion", [("jobId", "abc")]), "jobId not a long"),
        (envelope("deleteContentConversions", [("deleteFrom", "yesterday")]), "not a dateTime"),
        (envelope("contentUpload", [("content", "!!not base64!!"), ("filename", "a.odt")]), "not base64"),
    ],
)
def test_invalid_requests_get_a_fault(soap, xml, why):
    reply = post(soap, xml)
    _fault(reply)
    _still_serving(soap)


def test_qualified_children_are_accepted(soap):
    r = call(soap, "getContentConvertCounts", qualified=True)
    assert r.http == 200 and r.status == 200
    r = call(soap, "getContentConvertCounts", qualified=True, secret="bad")
    assert r.status == 501


def test_get_without_wsdl_is_not_an_operation(soap):
    r = requests.get(soap.url + PATH, timeout=10)
    assert r.status_code == 405 and b"Fault" in r.content
    assert requests.get(soap.url + PATH + "?wsdl", timeout=10).content.count(NS.encode()) > 0
