"""Repeated bad credentials are throttled per (name, source address) and per address on every
authenticated surface (SOAP, XML-RPC, /ops), without locking out the owner calling from elsewhere.

In-process: the source address is the WSGI environ's REMOTE_ADDR (werkzeug's test client), or the
X-Forwarded-For of a trusted proxy; the clock is a FakeClock moved by the test, nothing sleeps."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from werkzeug.test import Client

from protocol.soap import PATH
from tests.conftest import (
    FakeClock,
    add_client,
    add_factory,
    close_runtime,
    make_settings,
    sqlite_db,
    submit_job,
)
from tests.hostile.kit import basic, p, s, soap_body, xmlrpc_body

PER_NAME, PER_ADDRESS, WINDOW = 3, 8, 60
OPERATOR = ("admin", "op-secret-throttle")
A, B = "198.51.100.7", "203.0.113.9"


@dataclass
class App:
    client: Client
    rt: Any
    clock: FakeClock
    job_id: int

    def soap(self, address: str, who: tuple[str, str], op: str = "getContentConvertCounts", fields=None, headers=None):  # type: ignore[no-untyped-def]
        resp = self.client.post(
            PATH, data=soap_body(op, fields or [], creds=who), headers={"Content-Type": "text/xml; charset=utf-8", **(headers or {})},
            environ_base={"REMOTE_ADDR": address},
        )
        status = re.search(rb"<status>(\d+)</status>", resp.data)
        message = re.search(rb"<statusMessage>([^<]*)</statusMessage>", resp.data)
        assert resp.status_code == 200 and status, resp.data[:300]
        return int(status.group(1)), (message.group(1).decode() if message else "")

    def xmlrpc(self, address: str, auth: tuple[str, str], headers=None):  # type: ignore[no-untyped-def]
        resp = self.client.post(
            "/xmlrpc", data=xmlrpc_body("jobs.poll", p(s(auth[0]))),
            headers={"Content-Type": "text/xml", "Authorization": basic(*auth), **(headers or {})},
            environ_base={"REMOTE_ADDR": address},
        )
        fault = re.search(rb"<name>faultCode</name>\s*<value><int>(\d+)</int>", resp.data)
        return resp, (int(fault.group(1)) if fault else None)

    def ops(self, address: str, auth: tuple[str, str] | None):  # type: ignore[no-untyped-def]
        headers = {"Authorization": basic(*auth)} if auth else {}
        return self.client.get("/ops/data.json", headers=headers, environ_base={"REMOTE_ADDR": address})


def _app(tmp_path, **kw) -> Iterator[App]:  # type: ignore[no-untyped-def]
    from app.runtime import build_runtime
    from app.web import create_app

    settings = make_settings(
        tmp_path, database_url=sqlite_db(tmp_path), operator_user=OPERATOR[0], operator_password=OPERATOR[1],
        auth_throttle_per_name=PER_NAME, auth_throttle_per_address=PER_ADDRESS, auth_throttle_window_seconds=WINDOW, **kw,
    )
    clock = FakeClock()
    rt = build_runtime(settings, clock=clock, broker=False)
    mine = add_client(rt, "petshow", "Wf-throttle-secret")
    add_client(rt, "other", "other-secret")
    add_factory(rt, "factory-1", "factory-secret-1")
    job_id, _ = submit_job(rt, mine)
    try:
        yield App(Client(create_app(rt)), rt, clock, job_id)
    finally:
        close_runtime(rt)


@pytest.fixture
def app(tmp_path) -> Iterator[App]:  # type: ignore[no-untyped-def]
    yield from _app(tmp_path)


@pytest.fixture
def proxied(tmp_path) -> Iterator[App]:  # type: ignore[no-untyped-def]
    here = tmp_path / "proxied"
    here.mkdir()
    yield from _app(here, trusted_proxies=("127.0.0.1/32",))


GOOD = ("petshow", "Wf-throttle-secret")
WRONG = ("petshow", "wrong")
FACTORY = ("factory-1", "factory-secret-1")


def test_soap_throttles_the_name_at_that_address_and_the_owner_elsewhere_gets_in(app: App) -> None:
    for _ in range(PER_NAME):
        assert app.soap(A, WRONG) == (501, "authentication failed")
    status, message = app.soap(A, WRONG)
    assert status == 501 and message == "too many failed authentications from this address; retry in 20 s"
    # The right secret from the throttled address is refused too (no oracle for a guesser) ...
    assert app.soap(A, GOOD)[0] == 501
    # ... but the owner from another address is served, and another client from the same address.
    assert app.soap(B, GOOD) == (200, "")
    assert app.soap(A, ("other", "other-secret")) == (200, "")


def test_soap_contentconvert_carries_retry_after_seconds(app: App) -> None:
    for _ in range(PER_NAME):
        app.soap(A, WRONG)
    resp = app.client.post(
        PATH, data=soap_body("contentConvert", [("contentIdentifier", "x"), ("application", "LibreOffice Writer"), ("version", "7.4")], creds=GOOD),
        headers={"Content-Type": "text/xml; charset=utf-8"}, environ_base={"REMOTE_ADDR": A},
    )
    assert b"<status>501</status>" in resp.data and b"<retryAfterSeconds>20</retryAfterSeconds>" in resp.data


def test_the_result_fast_path_counts_one_failure_per_request_and_refuses_when_throttled(app: App) -> None:
    # getContentConvertResult has a streaming fast path that hands errors on to spyne: one request, one failure.
    fields = [("jobId", str(app.job_id))]
    for _ in range(PER_NAME):
        assert app.soap(A, WRONG, "getContentConvertResult", fields) == (501, "authentication failed")
    assert "too many failed" in app.soap(A, GOOD, "getContentConvertResult", fields)[1]
    assert app.soap(B, GOOD, "getContentConvertResult", fields)[0] == 518  # not COMPLETE: but authenticated


def test_the_streamed_upload_path_is_throttled_too(app: App) -> None:
    content = base64.b64encode(b"PK" + b"x" * (1024 * 1024 + 10)).decode()
    fields = [("content", content), ("filename", "big.odt")]
    for _ in range(PER_NAME):
        assert app.soap(A, WRONG, "contentUpload", fields)[0] == 501
    status, message = app.soap(A, GOOD, "contentUpload", fields)
    assert status == 501 and "too many failed" in message
    assert app.soap(B, GOOD, "contentUpload", fields)[0] == 200


def test_xmlrpc_throttled_is_fault_429_with_retry_after(app: App) -> None:
    for _ in range(PER_NAME):
        resp, fault = app.xmlrpc(A, (FACTORY[0], "wrong"))
        assert (resp.status_code, fault) == (200, 401)
    resp, fault = app.xmlrpc(A, FACTORY)
    assert (resp.status_code, fault) == (200, 429) and resp.headers["Retry-After"] == "20"
    assert b"too many failed authentications" in resp.data
    resp, fault = app.xmlrpc(B, FACTORY)
    assert (resp.status_code, fault) == (200, None), resp.data[:300]


def test_ops_throttled_is_http_429_with_retry_after(app: App) -> None:
    assert app.ops(A, None).status_code == 401  # no credentials at all (a browser's first try): not counted
    for _ in range(PER_NAME):
        assert app.ops(A, (OPERATOR[0], "wrong")).status_code == 401
    resp = app.ops(A, OPERATOR)
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "20"
    assert b"Traceback" not in resp.data
    assert app.ops(B, OPERATOR).status_code == 200


def test_an_address_spraying_names_is_throttled_on_every_surface(app: App) -> None:
    for i in range(PER_ADDRESS):
        assert app.soap(A, (f"guess-{i}", "x"))[0] == 501
    assert "too many failed" in app.soap(A, ("other", "other-secret"))[1]
    assert app.xmlrpc(A, FACTORY)[1] == 429
    assert app.ops(A, OPERATOR).status_code == 429
    assert app.soap(B, ("other", "other-secret"))[0] == 200
    assert app.xmlrpc(B, FACTORY)[1] is None


def test_recovery_after_the_window(app: App) -> None:
    for _ in range(PER_NAME):
        app.soap(A, WRONG)
    assert app.soap(A, GOOD)[0] == 501
    app.clock.advance(WINDOW / PER_NAME)  # one token back
    assert app.soap(A, GOOD) == (200, "")
    for _ in range(PER_NAME):
        app.soap(A, WRONG)
    app.clock.advance(WINDOW)
    assert app.soap(A, GOOD) == (200, "")


def test_a_correct_secret_forgives_earlier_failures_of_that_name(app: App) -> None:
    for _ in range(PER_NAME - 1):
        app.soap(A, WRONG)
    assert app.soap(A, GOOD)[0] == 200
    for _ in range(PER_NAME - 1):
        assert app.soap(A, WRONG) == (501, "authentication failed")
    assert app.soap(A, GOOD)[0] == 200


def test_x_forwarded_for_counts_only_behind_a_trusted_proxy(app: App, proxied: App) -> None:
    # Not trusted: every request is from its REMOTE_ADDR, whatever the header says.
    for i in range(PER_NAME):
        app.soap(A, WRONG, headers={"X-Forwarded-For": f"10.0.0.{i}"})
    assert "too many failed" in app.soap(A, GOOD, headers={"X-Forwarded-For": "10.9.9.9"})[1]
    # Behind the trusted proxy (127.0.0.1): the address the proxy appended is the source.
    for _ in range(PER_NAME):
        proxied.soap("127.0.0.1", WRONG, headers={"X-Forwarded-For": A})
    assert "too many failed" in proxied.soap("127.0.0.1", GOOD, headers={"X-Forwarded-For": A})[1]
    assert proxied.soap("127.0.0.1", GOOD, headers={"X-Forwarded-For": f"{A}, {B}"}) == (200, "")
    assert proxied.xmlrpc("127.0.0.1", FACTORY, headers={"X-Forwarded-For": B})[1] is None


def test_the_throttle_table_stays_bounded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    made = _app(tmp_path, auth_throttle_max_entries=10)
    app = next(made)
    try:
        for i in range(15):  # each one a different address and name, as from a botnet
            app.soap(f"10.7.0.{i}", (f"guess-{i}", "x"))
        assert app.rt.auth.throttle.sizes() == (10, 10)
    finally:
        made.close()
