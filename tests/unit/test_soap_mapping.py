"""SOAP adapter pieces with no I/O: the status table, time zones, the size guard, the parser flags."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.domain import errors
from protocol import soap
from protocol.soap import operations


@pytest.mark.parametrize(
    "exc, code",
    [
        (errors.AuthenticationFailed(), 501),
        (errors.NotFound(), 508),
        (errors.BadJobState(), 518),
        (errors.NotOwner(), 532),
        (errors.BadArgument(), 599),
        (errors.TooLarge(), 599),
        (errors.Unavailable(), 599),
        (errors.Quarantined(), 541),  # [ext] SPEC "Farm policy"
        (errors.LeaseNotHeld(), None),  # a factory-side error: not expected here, answered 599 by _call
        (ValueError(), None),
    ],
)
def test_status_table(exc, code):
    assert soap.status_of(exc) == code


def test_only_seed_and_farm_policy_codes_are_used():
    # The seed's codes, plus the SPEC's "Farm policy" extension codes for their own errors only.
    extensions = {errors.ClientQueueFull: 540, errors.Quarantined: 541}
    assert {code for cls, code in soap.STATUS if cls not in extensions} <= {200, 501, 508, 518, 532, 599}
    assert {(cls, code) for cls, code in soap.STATUS if cls in extensions} == set(extensions.items())
    assert soap.status_of(errors.ClientQueueFull()) == 540


@pytest.mark.parametrize(
    "given, expected",
    [
        (datetime(2009, 10, 26, 21, 32, 52), datetime(2009, 10, 26, 21, 32, 52, tzinfo=UTC)),  # no zone: UTC
        (
            datetime(2009, 10, 26, 21, 32, 52, tzinfo=timezone(timedelta(hours=2))),
            datetime(2009, 10, 26, 19, 32, 52, tzinfo=UTC),
        ),
        (datetime(2009, 10, 26, 19, 32, 52, tzinfo=UTC), datetime(2009, 10, 26, 19, 32, 52, tzinfo=UTC)),
        (None, None),
    ],
)
def test_timestamps_normalised_to_utc(given, expected):
    got = operations._utc(given)
    assert got == expected
    assert got is None or got.utcoffset() == timedelta(0)


def test_all_operations_in_one_service_with_seed_message_names():
    methods = soap.ContentService.public_methods
    assert set(methods) == {
        "getContentConvertCounts",
        "getContentConvertsPerState",
        "deleteContentConversion",
        "deleteContentConversions",
        "contentUpload",
        "contentConvert",
        "getContentConvertStatus",
        "getContentConvertResult",
        "getConversionTargets",
        "cancelContentConversion",  # [ext] SPEC "Farm policy"
    }
    for name, d in methods.items():
        assert d.in_message.get_type_name() == f"{name}Request"
        assert d.out_message.get_type_name() == f"{name}Response"
        outs = list(d.out_message._type_info)
        assert outs[:2] == ["status", "statusMessage"], name
        assert list(d.in_message._type_info)[:2] == ["clientApplicationId", "clientApplicationCredentials"]


def test_parser_is_hardened():
    kw = soap.HardenedSoap11(validator="soft").parser_kwargs
    assert kw["resolve_entities"] is False
    assert kw["huge_tree"] is False
    assert kw["no_network"] is True
    assert kw["load_dtd"] is False and kw["dtd_validation"] is False


def _run(app, **environ):  # type: ignore[no-untyped-def]
    seen = {}

    def start_response(status, headers, exc_info=None):  # type: ignore[no-untyped-def]
        seen["status"] = status

    env = {"REQUEST_METHOD": "POST", "wsgi.input": io.BytesIO(b""), **environ}
    body = b"".join(app(env, start_response))
    return seen["status"], body


def test_size_guard():
    inner_calls = []

    def inner(environ, start_response):  # type: ignore[no-untyped-def]
        inner_calls.append(environ)
        start_response("200 OK", [])
        return [b"ok"]

    guarded = soap.size_limited(inner, 100)
    status, body = _run(guarded, CONTENT_LENGTH="101")
    assert status.startswith("500") and b"RequestTooLong" in body and b"<faultstring>" in body
    status, body = _run(guarded, CONTENT_LENGTH="0")
    assert b"empty request" in body
    status, body = _run(guarded, CONTENT_LENGTH="x")
    assert b"bad Content-Length" in body
    assert not inner_calls
    assert _run(guarded, CONTENT_LENGTH="100") == ("200 OK", b"ok")
    assert _run(guarded, REQUEST_METHOD="GET", QUERY_STRING="wsdl") == ("200 OK", b"ok")


def test_escaping_errors_become_a_fault():
    def broken(environ, start_response):  # type: ignore[no-untyped-def]
        raise RuntimeError("SELECT secret FROM somewhere")

    status, body = _run(soap.size_limited(broken, 100), CONTENT_LENGTH="10")
    assert status.startswith("500") and b"internal error" in body and b"SELECT" not in body
