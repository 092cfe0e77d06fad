"""Every operation through zeep built from the live WSDL, and every status code reached."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
import zeep
from lxml import etree

from app.services import leases
from app.services.auth import FactoryIdentity
from app.services.poll import poll
from protocol.soap import NS, PATH
from tests.conftest import add_client
from tests.integration.soap.soapkit import SAFE

ODT = b"PK\x03\x04 fake odt bytes"
seen: Counter[int] = Counter()


@pytest.fixture
def svc(soap):  # type: ignore[no-untyped-def]
    client = zeep.Client(soap.url + PATH + "?wsdl")
    return client.create_service(f"{{{NS}}}ContentService", soap.url + PATH)


def creds(who: str = "petshow") -> dict[str, str]:
    return {
        "clientApplicationId": who,
        "clientApplicationCredentials": {"petshow": "Wf", "other": "other-secret"}[who],
    }


def st(reply, code: int):  # type: ignore[no-untyped-def]
    """Assert the status (and a message on errors); remember which codes were reached."""
    assert reply.status == code, (reply.status, reply.statusMessage)
    if code != 200:
        assert reply.statusMessage
    seen[code] += 1
    return reply


def _factory(rt) -> FactoryIdentity:  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        return rt.auth.factory(s, "factory-1", "factory-secret-1", rt.now())


def test_wsdl_address_is_the_public_url(soap):
    import requests

    wsdl = etree.fromstring(requests.get(soap.url + PATH + "?wsdl", timeout=10).content, SAFE)
    addr = wsdl.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
    assert addr.get("location") == soap.runtime.settings.public_url + PATH
    assert wsdl.find(".//{http://www.w3.org/2001/XMLSchema}schema").get("elementFormDefault") == "unqualified"
    assert len(wsdl.findall("{http://schemas.xmlsoap.org/wsdl/}service")) == 1


def test_every_operation_and_status(svc, soap, clock):
    rt = soap.runtime
    add_client(rt, "other", "other-secret")

    # --- 501 on every operation, unknown client and wrong secret alike
    for op, extra in [
        ("getContentConvertCounts", {}),
        ("getContentConvertsPerState", {}),
        ("deleteContentConversion", {"jobId": 1}),
        ("deleteContentConversions", {"deleteFrom": datetime(2020, 1, 1, tzinfo=UTC)}),
        ("contentUpload", {"content": [ODT], "filename": "a.odt"}),
        ("contentConvert", {"contentIdentifier": "x", "application": "LibreOffice Writer", "version": "7.4"}),
        ("getContentConvertStatus", {"jobId": 1}),
        ("getContentConvertResult", {"jobId": 1}),
        ("getConversionTargets", {}),
    ]:
        for who, secret in (("petshow", "wrong"), ("nobody", "Wf")):
            r = getattr(svc, op)(clientApplicationId=who, clientApplicationCredentials=secret, **extra)
            st(r, 501)
            assert r.statusMessage == "authentication failed"

    # --- targets
    r = st(svc.getConversionTargets(**creds()), 200)
    assert [(t.application, t.version, t.doctypes, t.formats) for t in r.conversionTarget] == [
        ("LibreOffice Writer", "7.4", "odt", "odf,pdf,png")
    ]

    # --- upload
    up = st(svc.contentUpload(**creds(), content=[ODT], filename="report.odt"), 200)
    ident = up.contentIdentifier
    st(svc.contentUpload(**creds(), content=[ODT], filename="report.txt"), 599)
    st(svc.contentUpload(**creds(), content=[b""], filename="empty.odt"), 599)
    two = st(svc.contentUpload(**creds(), content=[ODT[:5], ODT[5:]], filename="parts.odt"), 200)

    # --- convert
    conv = dict(contentIdentifier=ident, application="LibreOffice Writer", version="7.4")
    j1 = st(svc.contentConvert(**creds(), **conv, format="pdf"), 200).jobId
    j2 = st(
        svc.contentConvert(**creds(), **conv, pageStart=2, pageEnd=3, successUrl="http://127.0.0.1:9/ok"), 200
    ).jobId
    j3 = st(svc.contentConvert(**creds(), **{**conv, "contentIdentifier": two.contentIdentifier}), 200).jobId
    assert j1 < j2 < j3
    assert (
        "unknown contentIdentifier"
        in st(svc.contentConvert(**creds(), **{**conv, "contentIdentifier": "nope"}), 599).statusMessage
    )
    other_up = st(svc.contentUpload(**creds("other"), content=[ODT], filename="o.odt"), 200).contentIdentifier
    assert (
        "unknown contentIdentifier"
        in st(svc.contentConvert(**creds(), **{**conv, "contentIdentifier": other_up}), 599).statusMessage
    )
    assert (
        "no registered factory"
        in st(svc.contentConvert(**creds(), **{**conv, "version": "99"}), 599).statusMessage
    )
    ods = st(svc.contentUpload(**creds(), content=[ODT], filename="sheet.ods"), 200).contentIdentifier
    assert (
        "does not convert ods"
        in st(svc.contentConvert(**creds(), **{**conv, "contentIdentifier": ods}), 599).statusMessage
    )
    st(svc.contentConvert(**creds(), **conv, format="docx"), 599)
    st(svc.contentConvert(**creds(), **conv, pageStart=5, pageEnd=2), 599)
    st(svc.contentConvert(**creds(), **conv, failureUrl="ftp://example.org/x"), 599)

    # --- status
    s1 = st(svc.getContentConvertStatus(**creds(), jobId=j1), 200)
    assert (s1.jobId, s1.jobStatus, s1.application, s1.version, s1.format, s1.attempts) == (
        j1,
        0,
        "LibreOffice Writer",
        "7.4",
        "pdf",
        0,
    )
    assert len(s1.jobGuid) == 36 and s1.submitted == rt.now() and s1.failureReason is None
    st(svc.getContentConvertStatus(**creds(), jobId=999999), 508)
    st(svc.getContentConvertStatus(**creds("other"), jobId=j1), 532)

    # --- counts and listing (with the [ext] filters)
    r = st(svc.getContentConvertCounts(**creds()), 200)
    assert [(c.jobStatus, c.count) for c in r.contentConvertCount] == [(0, 3)]
    assert st(svc.getContentConvertCounts(**creds("other")), 200).contentConvertCount == []
    r = st(svc.getContentConvertsPerState(**creds()), 200)
    assert [(c.jobId, c.jobStatus) for c in r.contentConvertsPerState] == [(j1, 0), (j2, 0), (j3, 0)]
    r = st(svc.getContentConvertsPerState(**creds(), afterJobId=j1, maxResults=1), 200)
    assert [c.jobId for c in r.contentConvertsPerState] == [j2]
    assert st(svc.getContentConvertsPerState(**creds(), jobStatus=3), 200).contentConvertsPerState == []
    st(svc.getContentConvertsPerState(**creds(), jobStatus=7), 599)

    # --- a factory takes j1 (REQUESTED_FOR_PROCESSING): result and delete refused with 518
    claimed = poll(rt.db, rt.now(), rt.policy, rt.mirror, _factory(rt))
    assert claimed is not None and claimed.id == j1
    st(svc.getContentConvertResult(**creds(), jobId=j1), 518)
    st(svc.deleteContentConversion(**creds(), jobId=j1), 518)
    st(svc.getContentConvertResult(**creds(), jobId=j2), 518)  # QUEUED: no result yet
    with rt.db.session() as s:
        leases.finish(
            s,
            rt.now(),
            rt.notifier,
            guid=claimed.guid,
            owner="factory-1",
            token=claimed.lease_token,
            fmt="pdf",
            parts=b"%PDF-1.4 result",
            max_bytes=10**6,
        )
    res = st(svc.getContentConvertResult(**creds(), jobId=j1), 200)
    assert (res.format, res.filename, res.content) == ("pdf", "report.pdf", [b"%PDF-1.4 result"])
    st(svc.getContentConvertResult(**creds("other"), jobId=j1), 532)
    st(svc.getContentConvertResult(**creds(), jobId=424242), 508)

    # --- single deletes
    st(svc.deleteContentConversion(**creds("other"), jobId=j2), 532)
    st(svc.deleteContentConversion(**creds(), jobId=424242), 508)
    st(svc.deleteContentConversion(**creds(), jobId=j2), 200)
    st(svc.deleteContentConversion(**creds(), jobId=j2), 508)  # gone means unknown
    st(svc.getContentConvertStatus(**creds(), jobId=j2), 508)

    # --- range deletes: zones, empty ranges, reversed range
    now = rt.now()
    r = st(svc.deleteContentConversions(**creds(), deleteFrom=now + timedelta(hours=1), deleteTo=now), 599)
    assert "deleteTo" in r.statusMessage
    r = st(svc.deleteContentConversions(**creds("other"), deleteFrom=now - timedelta(days=1)), 200)
    assert (r.deletedCount, r.skippedCount) == (0, 0)  # petshow's jobs are not other's to delete
    plus2 = timezone(timedelta(hours=2))
    clock.advance(1)  # deleteTo defaults to now and is exclusive: jobs submitted at this instant stay
    r = st(
        svc.deleteContentConversions(**creds(), deleteFrom=(now - timedelta(minutes=1)).astimezone(plus2)),
        200,
    )
    assert (r.deletedCount, r.skippedCount) == (2, 0)  # j1 (COMPLETE) and j3 (QUEUED)
    assert st(svc.getContentConvertCounts(**creds()), 200).contentConvertCount == []

    assert set(seen) == {200, 501, 508, 518, 532, 599}


def test_a_large_document_both_ways_with_stock_zeep_settings(svc, soap):
    """libxml2 (zeep's parser) refuses a text node over 10,000,000 characters unless huge_tree is on:
    a 20 MB document goes up as 7.5 MB `content` parts and its result comes back in 6 MB parts."""
    import os

    from protocol.soap import RESULT_PART_BYTES

    rt = soap.runtime
    doc = os.urandom(20 * 1024 * 1024)
    step = 7_500_000
    up = st(svc.contentUpload(**creds(), content=[doc[i : i + step] for i in range(0, len(doc), step)], filename="big.odt"), 200)
    job_id = st(
        svc.contentConvert(**creds(), contentIdentifier=up.contentIdentifier, application="LibreOffice Writer", version="7.4"), 200
    ).jobId
    claimed = poll(rt.db, rt.now(), rt.policy, rt.mirror, _factory(rt))
    assert claimed is not None and claimed.id == job_id
    with rt.db.read_session() as s:
        from app.db.blobs import read_blob
        from app.db.models import Content, Job

        job = s.get(Job, job_id)
        assert read_blob(s, s.get(Content, job.content_id).blob_id) == doc  # uploaded intact
    result = doc[::-1]
    with rt.db.session() as s:
        leases.finish(
            s, rt.now(), rt.notifier, guid=claimed.guid, owner="factory-1", token=claimed.lease_token, fmt="pdf",
            parts=result, max_bytes=rt.settings.max_document_bytes,
        )
    res = st(svc.getContentConvertResult(**creds(), jobId=job_id), 200)
    assert [len(p) for p in res.content] == [RESULT_PART_BYTES] * 3 + [len(result) - 3 * RESULT_PART_BYTES]
    assert b"".join(res.content) == result
