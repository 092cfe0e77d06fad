"""Property-based fuzzing of both endpoints over a real socket (hypothesis).

Requests are generated from each endpoint's grammar (operations and methods, their fields and
random ones, values from plausible to hostile) and by mutating well-formed requests. Properties:
every answer is a success or a refusal with one clear line (never a traceback or SQL); a refused
request leaves every table as it was; nothing is logged with a traceback; a well-formed request is
served afterwards. Endpoints: SOAP, XML-RPC and the operator page (/ops). `make test`: 500 requests per endpoint on SQLite, in 5
seeded parts of 100 (the same requests every run). `make soak` (CONVHUB_SOAK=1): 5,000 per endpoint,
random, on SQLite and PostgreSQL, in 5 parts of 1,000. Parallel test workers share the parts.
"""

from __future__ import annotations

import logging
import os
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from protocol.soap.schema import OPERATIONS
from protocol.xmlrpc.methods import METHODS
from tests.hostile.kit import (
    FACTORY,
    basic,
    check_clean,
    dump,
    p,
    request_bytes,
    send,
    soap,
    soap_body,
    xmlrpc,
    xmlrpc_body,
)

SOAK = os.environ.get("CONVHUB_SOAK", "") == "1"
EXAMPLES = 5000 if SOAK else 500
PARTS = list(range(5))  # parallel test workers share the parts
DATABASES = ["sqlite", "postgres"] if SOAK else ["sqlite"]

FIELDS = sorted({name for op in OPERATIONS for name, _ in op.ins} | {"bogus", "jobID", "x"})
XML_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=60)
NUMBERS = st.one_of(
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63), 10**30]),
)
DATES = st.one_of(
    st.datetimes().map(lambda d: d.isoformat()),
    st.builds(
        lambda y, mo, d, h, mi, s, z: f"{y:04d}-{mo:02d}-{d:02d}T{h:02d}:{mi:02d}:{s:02d}{z}",
        st.integers(0, 10000), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99), st.integers(0, 99),
        st.sampled_from(["", "Z", "+00:00", "-14:00", "+99:00", "+24:00"]),
    ),
)
VALUES = st.one_of(
    XML_TEXT.map(escape),
    st.text(max_size=30),  # unescaped: may break the XML, or carry characters XML forbids
    NUMBERS.map(str),
    DATES,
    st.binary(max_size=48).map(lambda b: __import__("base64").b64encode(b).decode()),
    st.sampled_from(["LibreOffice Writer", "7.4", "pdf", "png", "a.odt", "http://127.0.0.1:9/x", "petshow", "Wf", "' OR 1=1--", "$(id)"]),
)


def _soap_request(data: st.DataObject) -> bytes:
    op = data.draw(st.one_of(st.sampled_from([o.name for o in OPERATIONS]), st.text(min_size=1, max_size=12).map(escape)), "op")
    creds = data.draw(st.sampled_from([("petshow", "Wf"), ("petshow", "nope"), ("other", "other-secret"), None]), "creds")
    fields = data.draw(st.lists(st.tuples(st.sampled_from(FIELDS), VALUES), max_size=8), "fields")
    body = soap_body(op, fields, creds=creds)
    mutate = data.draw(st.sampled_from(["none", "none", "truncate", "flip", "insert"]), "mutate")
    if mutate == "truncate":
        body = body[: data.draw(st.integers(0, len(body) - 1))]
    elif mutate == "flip":
        i = data.draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([body[i] ^ data.draw(st.integers(1, 255))]) + body[i + 1 :]
    elif mutate == "insert":
        i = data.draw(st.integers(0, len(body)))
        body = body[:i] + data.draw(st.binary(min_size=1, max_size=16)) + body[i:]
    headers = data.draw(st.sampled_from([{}, {"SOAPAction": f'"{op}"'}, {"SOAPAction": '"getContentConvertCounts"'}]), "headers")
    return soap(body, headers)


def _xmlrpc_value(data: st.DataObject, depth: int = 0) -> str:
    kind = data.draw(st.sampled_from(["string", "int", "i4", "double", "boolean", "base64", "dateTime.iso8601", "nil", "array", "struct", "bare"]))
    if kind in ("array", "struct") and depth < 3:
        items = [_xmlrpc_value(data, depth + 1) for _ in range(data.draw(st.integers(0, 3)))]
        if kind == "array":
            return "<array><data>" + "".join(f"<value>{v}</value>" for v in items) + "</data></array>"
        return "<struct>" + "".join(f"<member><name>m{i}</name><value>{v}</value></member>" for i, v in enumerate(items)) + "</struct>"
    if kind == "nil":
        return "<nil/>"
    text = data.draw(VALUES)
    return text if kind == "bare" else f"<{kind}>{text}</{kind}>"


def _xmlrpc_request(data: st.DataObject) -> bytes:
    method = data.draw(st.one_of(st.sampled_from(sorted(METHODS)), st.text(max_size=12).map(escape)), "method")
    params = [f"<string>{FACTORY[0]}</string>"] if data.draw(st.booleans()) else []
    params += [_xmlrpc_value(data) for _ in range(data.draw(st.integers(0, 5)))]
    body = xmlrpc_body(method, "".join(p(v) for v in params))
    if data.draw(st.integers(0, 4)) == 0:
        i = data.draw(st.integers(0, len(body) - 1))
        body = body[:i] + bytes([body[i] ^ data.draw(st.integers(1, 255))]) + body[i + 1 :]
    auth = data.draw(st.sampled_from([FACTORY, FACTORY, ("factory-2", "factory-secret-2"), ("factory-1", "wrong"), None]), "auth")
    return xmlrpc(body, auth=auth)


OPS_ROUTES = ["/ops", "/ops/data.json", "/ops/trends", "/ops/jobs/{}", "/ops/comparisons/{}", "/ops/quarantine/{}/release",
              "/ops/static/{}", "/ops/{}", "/metrics", "/healthz"]
OPERATOR = ("admin", "op-secret-hostile")


def _ops_request(data: st.DataObject) -> bytes:
    """The operator page: its routes with generated path parts, queries, methods, credentials and
    form bodies. A form never carries the page's token, so every POST must be refused."""
    from urllib.parse import quote

    route = data.draw(st.sampled_from(OPS_ROUTES), "route")
    path = route.format(quote(data.draw(VALUES, "part"), safe="")) if "{}" in route else route
    query = data.draw(st.lists(st.tuples(st.sampled_from(["job", "refresh", "window", "x"]), VALUES), max_size=3), "query")
    if query:
        path += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query)
    method = data.draw(st.sampled_from(["GET", "GET", "POST", "HEAD", "PUT", "DELETE"]), "method")
    auth = data.draw(st.sampled_from([OPERATOR, OPERATOR, ("admin", "wrong"), ("", ""), None]), "auth")
    headers = {"Authorization": basic(*auth)} if auth else {}
    body = b""
    if method != "GET":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        body = ("csrf=" + quote(data.draw(VALUES, "csrf"), safe="")).encode()
    return request_bytes(method, path, body, headers)


def _fuzz(target, caplog, build, part: int) -> int:  # type: ignore[no-untyped-def]
    sent = [0]
    # The dump after a refused request is the next request's "before" (the database did not change).
    known: list[object] = [None]

    @settings(max_examples=EXAMPLES // len(PARTS), deadline=None, derandomize=False, database=None,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(st.data())
    def one(data: st.DataObject) -> None:
        before = known[0] if known[0] is not None else dump(target.rt)
        known[0] = None
        answer = send(target, build(data))
        sent[0] += 1
        kind = check_clean(answer, may_succeed=True)
        if kind != "ok":
            after = dump(target.rt)
            assert after == before, f"a refused request ({kind}) changed the database"
            known[0] = after

    if not SOAK:  # the same requests every run
        one = seed(4242 + part)(one)
    with caplog.at_level(logging.INFO):
        one()
    bad = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not bad, [(r.name, r.getMessage()[:200]) for r in bad]
    ok = send(target, soap(soap_body("getContentConvertCounts")))
    assert b"<status>200</status>" in ok.body
    return sent[0]


# 100 requests take about 15 s on a quiet machine; several times that on a loaded one.
LONG = pytest.mark.timeout(1800 if SOAK else 600)


@LONG
@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("db", DATABASES)
def test_fuzz_soap(request, caplog, db, part):
    assert _fuzz(request.getfixturevalue(f"{db}_target"), caplog, _soap_request, part) >= EXAMPLES // len(PARTS)


@LONG
@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("db", DATABASES)
def test_fuzz_xmlrpc(request, caplog, db, part):
    assert _fuzz(request.getfixturevalue(f"{db}_target"), caplog, _xmlrpc_request, part) >= EXAMPLES // len(PARTS)


@LONG
@pytest.mark.parametrize("part", PARTS)
@pytest.mark.parametrize("db", DATABASES)
def test_fuzz_ops(request, caplog, db, part):
    assert _fuzz(request.getfixturevalue(f"{db}_target"), caplog, _ops_request, part) >= EXAMPLES // len(PARTS)
