"""Database round trips of the factory hot path, counted over the real WSGI app on both databases.

A round trip is a statement the engine sends (`before_cursor_execute`), plus what a driver sends
on its own: PostgreSQL's BEGIN / COMMIT / ROLLBACK of a transaction that is not autocommit, and
pre-ping's probe. SQLite's are in-process calls, counted the same way so that both stay honest.
The numbers are the hot path's contract (docs/benchmarks.md, "Hot path"); they may only go down.
"""

from __future__ import annotations

import base64
import xmlrpc.client
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from sqlalchemy import event, text

from tests.conftest import add_client, add_factory, start_server, submit_job
from tests.integration.xmlrpc.xrkit import FACTORY, SECRET, proxy


@dataclass
class Count:
    statements: list[str] = field(default_factory=list)
    transaction_ends: int = 0  # BEGIN / COMMIT / ROLLBACK sent by the driver itself
    pings: int = 0
    checkouts: int = 0

    @property
    def round_trips(self) -> int:
        return len(self.statements) + self.transaction_ends + self.pings


@contextmanager
def counting(engine, monkeypatch) -> Iterator[Count]:  # type: ignore[no-untyped-def]
    c = Count()
    sqlite = engine.dialect.name == "sqlite"

    def autocommit(conn) -> bool:  # type: ignore[no-untyped-def]
        return conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"

    def on_statement(conn, cursor, statement, *a):  # type: ignore[no-untyped-def]
        c.statements.append(" ".join(statement.split())[:120])

    def on_begin(conn):  # type: ignore[no-untyped-def]
        # SQLite's BEGIN is a statement of its own (app.db.engine), counted above.
        if not sqlite and not autocommit(conn):
            c.transaction_ends += 1

    def on_end(conn):  # type: ignore[no-untyped-def]
        if not autocommit(conn):
            c.transaction_ends += 1

    def on_checkout(*a):  # type: ignore[no-untyped-def]
        c.checkouts += 1

    ping = engine.dialect.do_ping

    def counted_ping(dbapi_conn):  # type: ignore[no-untyped-def]
        c.pings += 1
        return ping(dbapi_conn)

    monkeypatch.setattr(engine.dialect, "do_ping", counted_ping)
    hooks = [("before_cursor_execute", on_statement), ("begin", on_begin), ("commit", on_end), ("rollback", on_end), ("checkout", on_checkout)]
    for name, fn in hooks:
        event.listen(engine, name, fn)
    try:
        yield c
    finally:
        for name, fn in hooks:
            event.remove(engine, name, fn)
        monkeypatch.setattr(engine.dialect, "do_ping", ping)


@pytest.fixture
def served(make_runtime, any_db_url):  # type: ignore[no-untyped-def]
    rt = make_runtime(database_url=any_db_url, broker=False)
    srv = start_server(rt)
    yield srv
    srv.stop()


# The hot path's (round trips, pool checkouts) per request (docs/benchmarks.md, "Hot path"), per
# database. SQLite's poll with a job reads on one connection and claims on another: its reads never
# take the write lock.
EXPECTED = {
    "sqlite": {"empty": (1, 1), "job": (5, 2), "finish": (6, 1)},
    "postgresql": {"empty": (1, 1), "job": (2, 1), "finish": (1, 1)},
}


def test_round_trips_of_poll_and_finish(served, monkeypatch):
    rt = served.runtime
    engine = rt.db.engine
    expected = EXPECTED[engine.dialect.name]
    cid = add_client(rt)
    add_factory(rt, FACTORY, SECRET)
    fp = proxy(served.url, use_builtin_types=True)
    assert fp.jobs.poll(FACTORY) == {}  # authenticates, records last_poll_at, the lazy reclaim's first run

    with counting(engine, monkeypatch) as empty:
        assert fp.jobs.poll(FACTORY) == {}
    _, guid = submit_job(rt, cid, b"PK one chunk")
    with counting(engine, monkeypatch) as handed:
        job = fp.jobs.poll(FACTORY)
    assert job["job"] == guid and base64.b64decode(job["document"]) == b"PK one chunk"
    with counting(engine, monkeypatch) as finished:
        result = fp.jobs.finish(FACTORY, guid, "pdf", xmlrpc.client.Binary(b"%PDF result"), job["lease"])
    assert result

    got = {"empty": empty, "job": handed, "finish": finished}
    report = {k: (v.round_trips, v.checkouts, v.statements) for k, v in got.items()}
    for what, c in got.items():
        assert (c.round_trips, c.checkouts) == expected[what], (what, report)
        assert c.pings == 0, report  # no pre-ping on the hot path


# The other lease holders' requests and the finish's general path, (round trips, pool checkouts).
# extend / fail: BEGIN, the job (locked on PostgreSQL), the fenced UPDATE, COMMIT. A finish the fast
# statement cannot take (here: a success callback is owed) costs that statement (PostgreSQL, in
# autocommit, its own checkout; SQLite, in the transaction), then BEGIN, the job, blob, chunk,
# result, fenced UPDATE, callback, followers' SELECT, COMMIT.
EXPECTED_LEASES = {
    "sqlite": {"extend": (4, 1), "fail": (4, 1), "finish_general": (10, 1)},
    "postgresql": {"extend": (4, 1), "fail": (4, 1), "finish_general": (10, 2)},
}


def test_round_trips_of_extend_fail_and_the_general_finish(served, monkeypatch):
    rt = served.runtime
    engine = rt.db.engine
    cid = add_client(rt)
    add_factory(rt, FACTORY, SECRET)
    fp = proxy(served.url, use_builtin_types=True)
    _, guid = submit_job(rt, cid, b"PK callback owed", success_url="http://example.test/done")
    job = fp.jobs.poll(FACTORY)
    with counting(engine, monkeypatch) as extended:
        assert fp.jobs.extend(FACTORY, guid, job["lease"])["cancelled"] is False
    with counting(engine, monkeypatch) as general:
        assert fp.jobs.finish(FACTORY, guid, "pdf", xmlrpc.client.Binary(b"%PDF result"), job["lease"])
    _, guid = submit_job(rt, cid, b"PK to fail")
    job = fp.jobs.poll(FACTORY)
    with counting(engine, monkeypatch) as failed:
        assert fp.jobs.fail(FACTORY, guid, "transient", job["lease"])["jobStatus"] == 0

    got = {"extend": extended, "fail": failed, "finish_general": general}
    report = {k: (v.round_trips, v.checkouts, v.statements) for k, v in got.items()}
    for what, c in got.items():
        assert (c.round_trips, c.checkouts) == EXPECTED_LEASES[engine.dialect.name][what], (what, report)
        assert c.pings == 0, report


def test_killed_backend_connections_do_not_fail_the_next_requests(make_runtime, pg_url):
    """No pre-ping: a pooled connection the server killed is found dead by the request's first
    statement, and the request runs once more on a fresh connection."""
    from sqlalchemy import create_engine

    rt = make_runtime(database_url=pg_url, broker=False)
    assert rt.db.engine.pool._pre_ping is False  # type: ignore[attr-defined]
    srv = start_server(rt)
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")

    def kill_pool() -> int:
        with admin.connect() as c:
            return len(c.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )).all())

    try:
        cid = add_client(rt)
        add_factory(rt, FACTORY, SECRET)
        fp = proxy(srv.url, use_builtin_types=True)
        assert fp.jobs.poll(FACTORY) == {}
        _, guid = submit_job(rt, cid)
        assert kill_pool() >= 1
        job = fp.jobs.poll(FACTORY)  # the claim
        assert job["job"] == guid
        assert kill_pool() >= 1
        assert fp.jobs.poll(FACTORY) == {}  # the probe
        assert kill_pool() >= 1
        assert fp.jobs.finish(FACTORY, guid, "pdf", xmlrpc.client.Binary(b"%PDF"), job["lease"])
        rt.auth.clear()
        assert kill_pool() >= 1
        assert fp.jobs.poll(FACTORY) == {}  # authentication's read, then the probe
    finally:
        srv.stop()
        admin.dispose()
