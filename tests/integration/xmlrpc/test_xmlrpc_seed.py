"""The seed's jobs.poll exchange (seeds/000_209ac6145251529c.txt) on the wire, byte for byte."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from datetime import datetime

from tests.conftest import submit_job
from tests.integration.xmlrpc.xrkit import basic, raw_post

# The seed's example request, with its methodName typo corrected (jobs.finish -> jobs.poll).
SEED_REQUEST = (
    b"<?xml version='1.0'?>\n"
    b"<methodCall>\n"
    b"<methodName>jobs.poll</methodName>\n"
    b"<params>\n"
    b"<param><value><string>My factory</string></value></param>\n"
    b"</params>\n"
    b"</methodCall>\n"
)

# Field name -> XML-RPC type, in the seed's order, then our extensions.
SEED_FIELDS = [
    ("job", "string"), ("application", "string"), ("version", "string"), ("pageStart", "int"),
    ("pageEnd", "int"), ("format", "string"), ("filename", "string"), ("doctype", "string"), ("document", "string"),
]
EXT_FIELDS = [("lease", "string"), ("leaseExpires", "dateTime.iso8601"), ("attempt", "int")]


def members(body: bytes) -> list[tuple[str, str, str]]:
    root = ET.fromstring(body)
    assert root.tag == "methodResponse"
    struct = root.find("./params/param/value/struct")
    assert struct is not None, body[:500]
    out = []
    for m in struct.findall("member"):
        (typed,) = list(m.find("value"))  # exactly one typed child
        out.append((m.findtext("name"), typed.tag, typed.text or ""))
    return out


def test_seed_request_gets_the_seed_struct(live_server, client_id, factory):
    data = bytes(range(256)) * 41 + b"odt!"  # not a multiple of 3, every byte value
    _, guid = submit_job(live_server.runtime, client_id, data, filename="mydocument.odt", fmt="pdf", page_start=1, page_end=0)

    status, headers, body = raw_post(live_server.url, SEED_REQUEST, {"Authorization": basic()})

    assert status == 200
    assert headers["content-type"].startswith("text/xml")
    assert int(headers["content-length"]) == len(body)
    got = members(body)
    assert [(n, t) for n, t, _ in got] == SEED_FIELDS + EXT_FIELDS
    values = {n: v for n, _, v in got}
    assert values["job"] == guid
    assert values["application"] == "LibreOffice Writer" and values["version"] == "7.4"
    assert values["pageStart"] == "1" and values["pageEnd"] == "0"
    assert values["format"] == "pdf" and values["filename"] == "mydocument.odt" and values["doctype"] == "odt"
    assert base64.b64decode(values["document"], validate=True) == data
    assert len(values["lease"]) >= 32 and values["attempt"] == "1"
    # dateTime.iso8601 in UTC: five minutes after the (fake) clock's now.
    expires = datetime.strptime(values["leaseExpires"], "%Y%m%dT%H:%M:%S")
    assert expires == datetime(2026, 1, 1, 12, 5)


def test_nothing_to_do_is_an_empty_struct(live_server, factory):
    status, _, body = raw_post(live_server.url, SEED_REQUEST, {"Authorization": basic()})
    assert status == 200
    struct = ET.fromstring(body).find("./params/param/value/struct")
    assert struct is not None and list(struct) == []
    assert b"<struct></struct>" in body


def test_seed_request_in_iso_8859_1(live_server, client_id, factory):
    """The seed's response is iso-8859-1; a request declared so (with a non-ASCII name) is read right."""
    from tests.conftest import add_factory

    add_factory(live_server.runtime, "Fabrique é", "sécret")
    submit_job(live_server.runtime, client_id)
    body = SEED_REQUEST.replace(b"<?xml version='1.0'?>", b"<?xml version='1.0' encoding='iso-8859-1'?>")
    body = body.replace(b"My factory", "Fabrique é".encode("iso-8859-1"))
    status, _, out = raw_post(live_server.url, body, {"Authorization": basic("Fabrique é", "sécret")})
    assert status == 200
    assert dict((n, t) for n, t, _ in members(out))["document"] == "string"
