"""Access, enumerated rather than listed by hand: every route of the Flask url_map, every SOAP
operation and every XML-RPC method refuses missing and wrong credentials (but /healthz, /metrics and
the WSDL); a client cannot see, count, delete, fetch or convert another client's data through any
operation or id kind; a factory cannot finish, extend or fail a job leased to another; secrets never
reach the log."""

from __future__ import annotations

import base64
import logging
import re

import pytest

from protocol.soap import PATH
from protocol.soap.schema import OPERATIONS
from protocol.xmlrpc.methods import METHODS
from tests.hostile.conftest import OPERATOR
from tests.hostile.kit import FACTORY, basic, p, request_bytes, s, send, soap, soap_body, xmlrpc, xmlrpc_body

PUBLIC = {"/healthz", "/metrics"}
SECRETS = ["Wf", "other-secret", FACTORY[1], "factory-secret-2", OPERATOR[1]]
# Plausible values for every request field, so that only the credentials decide.
SAMPLE = {
    "jobId": "1", "afterJobId": "0", "maxResults": "5", "jobStatus": "0", "deleteFrom": "2000-01-01T00:00:00Z",
    "deleteTo": "2100-01-01T00:00:00Z", "content": base64.b64encode(b"PK x").decode(), "filename": "a.odt",
    "contentIdentifier": "x", "application": "LibreOffice Writer", "version": "7.4", "format": "pdf",
    "pageStart": "1", "pageEnd": "0", "successUrl": "http://127.0.0.1:9/s", "failureUrl": "http://127.0.0.1:9/f", "requestId": "r",
    "priority": "5", "noCache": "true", "comparisonId": "1", "referenceJobId": "1",
}


def _fields(op) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(name, SAMPLE[name]) for name, _ in op.ins[2:]]


def _status(answer) -> int:  # type: ignore[no-untyped-def]
    m = re.search(rb"<status>(\d+)</status>", answer.body)
    assert m, answer.text[:300]
    return int(m.group(1))


@pytest.mark.parametrize("op", OPERATIONS, ids=[o.name for o in OPERATIONS])
@pytest.mark.parametrize("creds", [("petshow", "wrong"), ("nobody", "Wf"), ("", ""), ("petshow", "Wf\x00")], ids=["wrong", "unknown", "empty", "nul"])
def test_every_soap_operation_refuses_bad_credentials(sqlite_target, op, creds):
    from xml.sax.saxutils import escape

    body = soap_body(op.name, _fields(op), creds=(escape(creds[0]), escape(creds[1]).replace("\x00", "")))
    if creds[1].endswith("\x00"):
        body = body.replace(b"Wf</clientApplicationCredentials>", b"Wf&#x0;</clientApplicationCredentials>")
    answer = send(sqlite_target, soap(body))
    assert b"Fault" in answer.body or _status(answer) == 501, answer.text[:300]


@pytest.mark.parametrize("op", OPERATIONS, ids=[o.name for o in OPERATIONS])
def test_every_soap_operation_refuses_missing_credentials(sqlite_target, op):
    answer = send(sqlite_target, soap(soap_body(op.name, _fields(op), creds=None)))
    assert answer.status == 500 and b"Client" in answer.body, answer.text[:300]


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("auth", [None, ("factory-1", "wrong"), ("nobody", "x"), ("factory-1", FACTORY[1] + "\x00")], ids=["none", "wrong", "unknown", "nul"])
def test_every_xmlrpc_method_refuses_bad_credentials(sqlite_target, method, auth):
    answer = send(sqlite_target, xmlrpc(xmlrpc_body(method, p(s(FACTORY[0]))), auth=auth))
    assert b"<name>faultCode</name>" in answer.body and b"401" in answer.body, answer.text[:300]
    assert answer.status == (401 if auth is None else 200)


def test_every_flask_route_but_the_public_ones_refuses_bad_credentials(sqlite_target):
    app = sqlite_target.server._server.app  # type: ignore[attr-defined]
    flask_app = app if hasattr(app, "url_map") else None
    if flask_app is None:  # the WSGI stack wraps Flask: find it
        seen, todo = set(), [app]
        while todo and flask_app is None:
            obj = todo.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if hasattr(obj, "url_map"):
                flask_app = obj
            todo += [v for v in vars(obj).values() if callable(v) or hasattr(v, "__dict__")] if hasattr(obj, "__dict__") else []
    assert flask_app is not None
    checked = []
    for rule in flask_app.url_map.iter_rules():
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", "1", rule.rule)
        if path in PUBLIC or rule.endpoint == "static":
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            for headers in ({}, {"Authorization": basic("admin", "wrong")}, {"Authorization": basic(*FACTORY) + "x"}):
                answer = send(sqlite_target, request_bytes(method, path, b"<x/>" if method == "POST" else b"", headers))
                refused = answer.status in (401, 403) or b"faultCode" in answer.body
                assert refused, (method, path, headers, answer.status, answer.text[:200])
                checked.append((method, path))
    assert ("POST", "/xmlrpc") in checked and ("GET", "/ops") in checked and ("GET", "/ops/data.json") in checked


def test_every_app_mounted_beside_flask_refuses_requests_without_credentials(sqlite_target):
    """The WSGI apps mounted beside Flask (SOAP) are not in its url_map: found in the middleware
    chain instead, so a new mount is checked too. Only `?wsdl` is served without credentials."""
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    mounts: dict[str, object] = {}
    seen: set[int] = set()
    todo = [sqlite_target.server._server.app]  # type: ignore[attr-defined]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, DispatcherMiddleware):
            mounts.update(obj.mounts)
        todo += [getattr(obj, a) for a in ("app", "wsgi_app") if hasattr(obj, a)]
    assert PATH in mounts, mounts
    for prefix in mounts:
        for method in ("GET", "POST", "PUT", "DELETE", "PATCH"):
            for path in (prefix, prefix + "/x", prefix + "?op=getContentConvertCounts"):
                body = soap_body("getContentConvertCounts", creds=None) if method != "GET" else b""
                answer = send(sqlite_target, request_bytes(method, path, body, {"Content-Type": "text/xml"}))
                assert answer.status != 200 or b"<status>501</status>" in answer.body, (method, path, answer.text[:200])
                assert b"<contentConvertCount>" not in answer.body


def test_public_endpoints_need_no_credentials(sqlite_target):
    for path in ["/healthz", "/metrics", PATH + "?wsdl"]:
        assert send(sqlite_target, request_bytes("GET", path)).status == 200, path


# ------------------------------------------------------------------ client isolation


def _call(target, op: str, fields, who=("petshow", "Wf")):  # type: ignore[no-untyped-def]
    return send(target, soap(soap_body(op, fields, creds=who)))


def test_a_client_cannot_reach_another_clients_data(sqlite_target):
    t = sqlite_target
    theirs = [job_id for job_id, _ in t.jobs[2:]]
    mine = [job_id for job_id, _ in t.jobs[:2]]
    # Every jobId the server has that is not mine, and ids past the end.
    for job_id in [*theirs, max(mine + theirs) + 1, 0, -1]:
        for op in ("getContentConvertStatus", "getContentConvertResult", "deleteContentConversion"):
            answer = _call(t, op, [("jobId", str(job_id))])
            assert _status(answer) in (508, 532), (op, job_id, answer.text[:300])
            assert b"<jobGuid>" not in answer.body and b"<content>" not in answer.body
    # Their upload cannot be converted: reported exactly like an unknown one.
    theirs_ident = _call(t, "contentConvert", [("contentIdentifier", t.their_content), ("application", "LibreOffice Writer"), ("version", "7.4")])
    unknown = _call(t, "contentConvert", [("contentIdentifier", "00000000-0000-0000-0000-000000000000"), ("application", "LibreOffice Writer"), ("version", "7.4")])
    assert _status(theirs_ident) == _status(unknown) == 599
    assert b"unknown contentIdentifier" in theirs_ident.body
    # Counts and listings show mine only; a range delete over all time touches mine only.
    listed = _call(t, "getContentConvertsPerState", [])
    ids = [int(x) for x in re.findall(rb"<jobId>(\d+)</jobId>", listed.body)]
    assert sorted(ids) == sorted(mine)
    counts = _call(t, "getContentConvertCounts", [])
    assert sum(int(x) for x in re.findall(rb"<count>(\d+)</count>", counts.body)) == len(mine)
    other_counts = _call(t, "getContentConvertCounts", [], who=("other", "other-secret"))
    deleted = _call(t, "deleteContentConversions", [("deleteFrom", "0001-01-01T00:00:00Z"), ("deleteTo", "9999-01-01T00:00:00Z")])
    assert _status(deleted) == 200 and b"<deletedCount>2</deletedCount>" in deleted.body
    assert _call(t, "getContentConvertCounts", [], who=("other", "other-secret")).body == other_counts.body
    for job_id in theirs:  # still theirs, still visible to them
        assert _status(_call(t, "getContentConvertStatus", [("jobId", str(job_id))], who=("other", "other-secret"))) == 200


# Every id a client can name, and which request fields take it. A GUID is the factories' name for a
# job: a client may still try it anywhere a jobId or an identifier goes.
ID_FIELDS = {
    "jobId": ("jobId", "guid"), "referenceJobId": ("jobId", "guid"), "afterJobId": ("jobId",),
    "contentIdentifier": ("contentIdentifier", "guid"), "comparisonId": ("comparisonId", "jobId"),
    "requestId": ("uploadRequestId", "convertRequestId"),
}
ISOLATION_CASES = [(op, name) for op in OPERATIONS for name, _ in op.ins if name in ID_FIELDS]


def _theirs(t) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The other client's ids of every kind (made once per module: an upload and a conversion sent with
    requestIds, and a comparison)."""
    if getattr(t, "theirs", None):
        return t.theirs  # type: ignore[no-any-return]
    other = ("other", "other-secret")
    doc = base64.b64encode(b"PK their document").decode()
    up = _call(t, "contentUpload", [("content", doc), ("filename", "theirs.odt"), ("requestId", "their-upload-1")], who=other)
    ident = re.search(rb"<contentIdentifier>([^<]+)<", up.body).group(1).decode()  # type: ignore[union-attr]
    conv = _call(t, "contentConvert", [("contentIdentifier", ident), ("application", "LibreOffice Writer"), ("version", "7.4"), ("requestId", "their-convert-1")], who=other)
    job_id = re.search(rb"<jobId>(\d+)<", conv.body).group(1).decode()  # type: ignore[union-attr]
    every = _call(t, "contentConvertAll", [("contentIdentifier", ident)], who=other)
    comparison = re.search(rb"<comparisonId>(\d+)<", every.body)
    assert comparison, every.text[:300]
    status = _call(t, "getContentConvertStatus", [("jobId", job_id)], who=other)
    guid = re.search(rb"<jobGuid>([^<]+)<", status.body).group(1).decode()  # type: ignore[union-attr]
    t.theirs = {
        "jobId": job_id, "guid": guid, "contentIdentifier": ident, "comparisonId": comparison.group(1).decode(),
        "uploadRequestId": "their-upload-1", "convertRequestId": "their-convert-1",
    }
    return t.theirs  # type: ignore[no-any-return]


@pytest.mark.parametrize(("op", "field"), ISOLATION_CASES, ids=[f"{o.name}-{f}" for o, f in ISOLATION_CASES])
def test_no_operation_reaches_another_clients_data_by_any_id(sqlite_target, op, field):
    """Every operation, every id-taking field, every kind of the other client's id: refused or
    answered with my own data only, and nothing of theirs (or, but for a requestId, of anyone's) changes."""
    from tests.hostile.kit import dump

    t = sqlite_target
    theirs = _theirs(t)
    secret_ids = [theirs["guid"], theirs["contentIdentifier"]]
    for kind in ID_FIELDS[field]:
        value = theirs[kind]
        fields = [(name, value if name == field else SAMPLE[name]) for name, _ in op.ins[2:]]
        before = dump(t.rt)
        answer = _call(t, op.name, fields)
        after = dump(t.rt)
        for leaked in (x for x in secret_ids if x != value):  # a fault may quote what was sent
            assert leaked.encode() not in answer.body, (op.name, field, kind, answer.text[:300])
        assert f"<jobId>{theirs['jobId']}</jobId>".encode() not in answer.body or field == "afterJobId", answer.text[:300]
        if field == "requestId":
            continue  # my own request under their requestId: served as mine (it may store my upload)
        assert after == before, (op.name, field, kind, "the database changed")
        if field in ("jobId", "contentIdentifier", "comparisonId", "referenceJobId"):
            refused = b"Fault" in answer.body or _status(answer) in (508, 532, 599)
            assert refused, (op.name, field, kind, answer.text[:300])
        else:  # afterJobId: a listing of mine only
            listed = [int(x) for x in re.findall(rb"<jobId>(\d+)</jobId>", answer.body)]
            assert set(listed) <= {job_id for job_id, _ in t.jobs[:2]}, answer.text[:300]


def test_a_factory_cannot_touch_a_job_leased_to_another(sqlite_target):
    t = sqlite_target
    other = ("factory-2", "factory-secret-2")
    poll = send(t, xmlrpc(xmlrpc_body("jobs.poll", p(s(other[0]))), auth=other))
    guid = re.search(rb"<name>job</name>\s*<value><string>([^<]+)</string>", poll.body)
    lease = re.search(rb"<name>lease</name>\s*<value><string>([^<]+)</string>", poll.body)
    assert guid and lease, poll.text[:400]
    g, tok = guid.group(1).decode(), lease.group(1).decode()
    from tests.hostile.kit import dump

    before = dump(t.rt)
    for params in (
        [FACTORY[0], g, "pdf", "<base64>UEs=</base64>"], [FACTORY[0], g, "pdf", "<base64>UEs=</base64>", tok],
    ):
        body = "".join(p(v if v.startswith("<") else s(v)) for v in params)
        answer = send(t, xmlrpc(xmlrpc_body("jobs.finish", body)))
        assert b"<name>faultCode</name>" in answer.body and b"<int>409</int>" in answer.body, answer.text[:300]
    for method, extra in (("jobs.extend", []), ("jobs.extend", [tok]), ("jobs.fail", ["r"]), ("jobs.fail", ["r", tok])):
        answer = send(t, xmlrpc(xmlrpc_body(method, "".join(p(s(v)) for v in [FACTORY[0], g, *extra]))))
        assert b"<int>409</int>" in answer.body, (method, answer.text[:300])
    # Naming the other factory does not help: the name must be the authenticated one.
    answer = send(t, xmlrpc(xmlrpc_body("jobs.finish", "".join(p(s(v)) for v in [other[0], g, "pdf", "UEs=", tok]))))
    assert b"<int>401</int>" in answer.body
    assert dump(t.rt) == before


def test_secrets_never_reach_the_log(sqlite_target, caplog):
    t = sqlite_target
    with caplog.at_level(logging.DEBUG):
        for who in [("petshow", "Wf"), ("petshow", "wrong-" + SECRETS[1]), ("other", "other-secret")]:
            _call(t, "getContentConvertCounts", [], who=who)
            _call(t, "contentUpload", [("content", "!!"), ("filename", "a.odt")], who=who)
        for auth in [FACTORY, ("factory-2", "factory-secret-2"), ("factory-1", "factory-secret-2")]:
            send(t, xmlrpc(xmlrpc_body("jobs.poll", p(s(auth[0]))), auth=auth))
            send(t, xmlrpc(xmlrpc_body("jobs.nothing"), auth=auth))
        send(t, request_bytes("GET", "/ops", headers={"Authorization": basic(*OPERATOR)}))
        send(t, request_bytes("GET", "/ops", headers={"Authorization": basic("admin", OPERATOR[1] + "x")}))
    text = "\n".join(r.getMessage() + (str(r.exc_info) if r.exc_info else "") + str(vars(r)) for r in caplog.records)
    assert caplog.records
    for secret in SECRETS[1:]:  # "Wf" is too short to search for; the others are distinctive
        assert secret not in text, secret
    assert base64.b64encode(f"{FACTORY[0]}:{FACTORY[1]}".encode()).decode() not in text
