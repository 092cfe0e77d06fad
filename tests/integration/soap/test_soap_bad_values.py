"""Every date and integer field of every operation, with values of the right shape but no meaning:
a Client fault or a 599 with a one-line message, never a Server fault, never a logged traceback."""

from __future__ import annotations

import logging

import pytest

from tests.integration.soap.soapkit import call

# (operation, fields) -> the answer is a Client fault.
FAULTS = [
    ("deleteContentConversions", [("deleteFrom", "2026-13-45T99:00:00Z")]),  # the probe's value
    ("deleteContentConversions", [("deleteFrom", "2026-02-30T00:00:00Z")]),
    ("deleteContentConversions", [("deleteFrom", "2026-01-01T24:61:00Z")]),
    ("deleteContentConversions", [("deleteFrom", "0000-01-01T00:00:00Z")]),
    ("deleteContentConversions", [("deleteFrom", "2026-01-01T00:00:00+99:00")]),
    ("deleteContentConversions", [("deleteFrom", "99999-12-31T23:59:59Z")]),
    ("deleteContentConversions", [("deleteFrom", "-0001-12-31T23:59:59Z")]),
    ("deleteContentConversions", [("deleteFrom", "2026-01-01T00:00:00Z"), ("deleteTo", "2026-13-45T99:00:00Z")]),
    ("deleteContentConversions", [("deleteFrom", "2026-01-01T00:00:00Z"), ("deleteTo", "2025-02-29T00:00:00")]),
    ("deleteContentConversions", [("deleteFrom", "0001-01-01T00:00:00+01:00")]),  # before year 1 in UTC
    ("deleteContentConversions", [("deleteFrom", "9999-12-31T23:59:59-14:00")]),  # after 9999 in UTC
    ("getContentConvertsPerState", [("afterJobId", str(2**63))]),
    ("getContentConvertsPerState", [("afterJobId", str(10**30))]),
    ("deleteContentConversion", [("jobId", str(2**63))]),
    ("deleteContentConversion", [("jobId", str(-(2**63) - 1))]),
    ("getContentConvertStatus", [("jobId", str(10**40))]),
    ("getContentConvertResult", [("jobId", str(2**64))]),
]

# (operation, fields, words of the statusMessage) -> status 599.
STATUS_599 = [
    ("getContentConvertsPerState", [("jobStatus", str(10**30))], "jobStatus"),
    ("getContentConvertsPerState", [("jobStatus", "-1")], "jobStatus"),
    ("getContentConvertsPerState", [("maxResults", str(10**30))], "maxResults"),
    ("getContentConvertsPerState", [("maxResults", "-5")], "maxResults"),
    ("deleteContentConversions", [("deleteFrom", "2026-06-01T00:00:00Z"), ("deleteTo", "2026-01-01T00:00:00Z")], "before"),
]


def _no_traceback_logged(caplog) -> None:  # type: ignore[no-untyped-def]
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [(r.name, r.getMessage()[:200]) for r in bad]


@pytest.mark.parametrize("op, fields", FAULTS, ids=[f"{o}-{f[-1][1][:24]}" for o, f in FAULTS])
def test_impossible_values_get_a_client_fault(soap, caplog, op, fields):
    with caplog.at_level(logging.DEBUG):
        r = call(soap, op, fields)
    assert r.http == 500 and r.is_fault, r.text[:300]
    assert r.body.findtext("faultcode").split(":")[-1].startswith("Client"), r.text[:300]
    text = r.body.findtext("faultstring") or ""
    assert text and "\n" not in text and "Traceback" not in r.text
    assert "internal error" not in text
    _no_traceback_logged(caplog)
    assert call(soap, "getContentConvertCounts").status == 200


def test_the_probe_date_names_the_value(soap):
    r = call(soap, "deleteContentConversions", [("deleteFrom", "2026-13-45T99:00:00Z")])
    assert "'2026-13-45T99:00:00Z' is not a valid xsd:dateTime" in r.body.findtext("faultstring")


@pytest.mark.parametrize("op, fields, words", STATUS_599, ids=[f"{o}-{f[-1][1][:24]}" for o, f, _ in STATUS_599])
def test_out_of_range_values_get_599_with_a_message(soap, caplog, op, fields, words):
    with caplog.at_level(logging.DEBUG):
        r = call(soap, op, fields)
    assert r.http == 200 and r.status == 599
    message = r.get("statusMessage") or ""
    assert words in message and message != "internal error" and "\n" not in message
    _no_traceback_logged(caplog)


def _upload(soap) -> str:  # type: ignore[no-untyped-def]
    import base64

    r = call(soap, "contentUpload", [("content", base64.b64encode(b"PK fake").decode()), ("filename", "a.odt")])
    assert r.status == 200
    return r.get("contentIdentifier")  # type: ignore[return-value]


@pytest.mark.parametrize(
    "pages, words",
    [
        ((str(10**30), None), "at most"),
        ((None, str(2**31)), "at most"),
        (("1", str(10**30)), "at most"),
        (("-1", None), "page range"),
        (("5", "2"), "page range"),
        (("0", "-7"), "page range"),
    ],
)
def test_page_numbers_out_of_range_get_599(soap, caplog, pages, words):
    ident = _upload(soap)
    fields: list[tuple[str, object]] = [("contentIdentifier", ident), ("application", "LibreOffice Writer"), ("version", "7.4"), ("format", "pdf")]
    if pages[0] is not None:
        fields.append(("pageStart", pages[0]))
    if pages[1] is not None:
        fields.append(("pageEnd", pages[1]))
    with caplog.at_level(logging.DEBUG):
        r = call(soap, "contentConvert", fields)
    assert r.status == 599 and words in (r.get("statusMessage") or "")
    _no_traceback_logged(caplog)
    assert call(soap, "getContentConvertCounts").get("status") == "200"
    assert call(soap, "getContentConvertsPerState").body.find("contentConvertsPerState") is None  # no job made


def test_extreme_but_valid_dates_are_served(soap):
    for start, end in [("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"), ("1970-01-01T00:00:00", None)]:
        fields: list[tuple[str, object]] = [("deleteFrom", start)] + ([("deleteTo", end)] if end else [])
        r = call(soap, "deleteContentConversions", fields)
        assert r.status == 200, r.get("statusMessage")
