"""Hostile XML is refused cheaply with fault 400, while the server keeps serving other factories."""

from __future__ import annotations

import threading
import xmlrpc.client

import pytest
from sqlalchemy import event

from tests.conftest import submit_job, wait_for
from tests.integration.xmlrpc.xrkit import FACTORY, basic, raw_post

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE methodCall [\n<!ENTITY lol "lol">\n'
    + b"".join(b'<!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b"]>\n<methodCall><methodName>jobs.poll</methodName><params><param><value><string>&lol9;</string></value></param></params></methodCall>"
)
QUADRATIC = (
    b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "' + b"A" * 50_000 + b'">]><methodCall><methodName>jobs.poll</methodName>'
    b"<params><param><value><string>" + b"&a;" * 20_000 + b"</string></value></param></params></methodCall>"
)
EXTERNAL = (
    b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><methodCall><methodName>jobs.poll</methodName>'
    b"<params><param><value><string>&x;</string></value></param></params></methodCall>"
)
PARAM_ENTITY = b'<?xml version="1.0"?><!DOCTYPE m SYSTEM "http://127.0.0.1:9/evil.dtd"><methodCall><methodName>jobs.poll</methodName></methodCall>'


def deep(levels: int) -> bytes:
    inner = b"<value><array><data>" * levels + b"</data></array></value>" * levels
    return b"<methodCall><methodName>jobs.poll</methodName><params><param>" + inner + b"</param></params></methodCall>"


def many_values(n: int) -> bytes:
    return (b"<methodCall><methodName>jobs.poll</methodName><params><param><value><array><data>"
            + b"<value><int>1</int></value>" * n + b"</data></array></value></param></params></methodCall>")


def fault(body: bytes) -> xmlrpc.client.Fault:
    with pytest.raises(xmlrpc.client.Fault) as info:
        xmlrpc.client.loads(body)
    return info.value


HOSTILE = [
    ("billion-laughs", BILLION_LAUGHS, "DOCTYPE"),
    ("quadratic", QUADRATIC, "DOCTYPE"),
    ("external-entity", EXTERNAL, "DOCTYPE"),
    ("external-dtd", PARAM_ENTITY, "DOCTYPE"),
    ("deep", deep(40), "nested deeper than 32"),
    ("many-values", many_values(20_000), "more than 10000 values"),
    ("undefined-entity", b"<methodCall><methodName>jobs.poll</methodName><params><param><value><string>&undefined;</string></value></param></params></methodCall>", "undefined entity"),
    ("wrong-root", b"<methodResponse/>", "unknown element"),
    ("misplaced", b"<methodCall><methodName>jobs.poll</methodName><value/></methodCall>", "not allowed inside <methodCall>"),
    ("int-range", b"<methodCall><methodName>jobs.poll</methodName><params><param><value><int>99999999999</int></value></param></params></methodCall>", "out of range"),
    ("garbage", b"\xff\xfe garbage", "malformed XML"),
]


def test_refused_with_400_before_any_database_access(live_server, factory):
    rt = live_server.runtime
    raw_post(live_server.url, b"<methodCall><methodName>system.listMethods</methodName></methodCall>", {"Authorization": basic()})  # auth cached
    statements: list[str] = []
    listener = lambda *a: statements.append(a[2])  # noqa: E731
    event.listen(rt.db.engine, "before_cursor_execute", listener)
    try:
        for name, payload, words in HOSTILE:  # how quickly each is refused: bench/bench_timeouts.py
            status, headers, body = raw_post(live_server.url, payload, {"Authorization": basic()})
            assert status == 200 and headers["content-type"].startswith("text/xml"), name
            f = fault(body)
            assert f.faultCode == 400 and words in f.faultString, (name, f.faultString)
            assert b"passwd" not in body and b"root:" not in body
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", listener)
    assert statements == []  # refused before any service ran


def test_bombs_in_one_thread_while_polls_succeed(live_server, client_id, factory):
    rt = live_server.runtime
    for _ in range(20):
        submit_job(rt, client_id)
    stop = threading.Event()
    refused: list[int] = []

    def bomber() -> None:
        while not stop.is_set():
            for payload in (BILLION_LAUGHS, QUADRATIC, deep(10_000), many_values(50_000)):
                _, _, body = raw_post(live_server.url, payload, {"Authorization": basic()})
                refused.append(fault(body).faultCode)

    t = threading.Thread(target=bomber)
    t.start()
    try:
        from tests.integration.xmlrpc.xrkit import proxy

        # The polls start once the bombing has, so they overlap it whatever the threads' timing.
        wait_for(lambda: refused, 30, "the first bomb refused")
        fp = proxy(live_server.url)
        got = [fp.jobs.poll(FACTORY)["job"] for _ in range(20)]
    finally:
        stop.set()
        t.join(30)
    assert len(set(got)) == 20
    assert refused and set(refused) == {400}
