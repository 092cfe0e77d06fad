"""deleteContentConversions: xsd:dateTime forms, the [from, to) window, in-flight jobs skipped, and
a delete racing factory polls on PostgreSQL (each job ends deleted or handed out, never both)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from sqlalchemy import select

from app.db.models import Job
from app.domain.matching import WorkerSpec
from app.domain.states import DELETED
from app.services import claims
from app.services.poll import poll
from tests.conftest import WRITER, add_client, add_factory, start_server, submit_job
from tests.integration.soap.soapkit import call

SPEC = (WorkerSpec.parse(WRITER),)


def _listed(srv) -> list[int]:  # type: ignore[no-untyped-def]
    return [
        int(c.findtext("jobId"))
        for c in call(srv, "getContentConvertsPerState").body.findall("contentConvertsPerState")
    ]


def test_timestamp_forms_and_window(soap, clock):
    rt = soap.runtime
    at = {}
    for label, t in [
        ("before", "19:00:00"),
        ("from", "19:32:52"),
        ("inside", "20:00:00"),
        ("to", "20:32:52"),
    ]:
        clock.t = datetime.fromisoformat(f"2009-10-26T{t}+00:00")
        at[label] = submit_job(rt, 1)[0]
    clock.t = datetime(2026, 1, 1, tzinfo=UTC)
    # deleteFrom with an offset (= 19:32:52Z, inclusive); deleteTo without a zone (UTC, exclusive).
    r = call(
        soap,
        "deleteContentConversions",
        [("deleteFrom", "2009-10-26T21:32:52+02:00"), ("deleteTo", "2009-10-26T20:32:52")],
    )
    assert (r.status, r.get("deletedCount"), r.get("skippedCount")) == (200, "2", "0")
    assert _listed(soap) == [at["before"], at["to"]]
    # Z form, and deleteTo absent = up to now
    r = call(soap, "deleteContentConversions", [("deleteFrom", "2009-10-26T19:32:52Z")])
    assert (r.status, r.get("deletedCount")) == (200, "1")
    assert _listed(soap) == [at["before"]]


def test_reversed_range_is_599(soap):
    r = call(
        soap,
        "deleteContentConversions",
        [("deleteFrom", "2009-10-26T20:00:00Z"), ("deleteTo", "2009-10-26T19:00:00Z")],
    )
    assert r.status == 599 and "deleteTo" in r.get("statusMessage")


def test_in_flight_skipped_and_removed_jobs_are_gone_everywhere(soap, clock):
    rt = soap.runtime
    ids = [submit_job(rt, 1)[0] for _ in range(5)]
    with rt.db.session() as s:
        held = claims.claim(s, rt.now(), rt.policy, owner="factory-1", workers=SPEC)
    assert held is not None and held.id == ids[0]
    clock.advance(1)
    r = call(soap, "deleteContentConversions", [("deleteFrom", "2000-01-01T00:00:00Z")])
    assert (r.status, r.get("deletedCount"), r.get("skippedCount")) == (200, "4", "1")
    assert _listed(soap) == [ids[0]]
    counts = call(soap, "getContentConvertCounts").body.findall("contentConvertCount")
    assert [(c.findtext("jobStatus"), c.findtext("count")) for c in counts] == [("1", "1")]
    with rt.db.read_session() as s:
        factory = rt.auth.factory(s, "factory-1", "factory-secret-1", rt.now())
    assert poll(rt.db, rt.now(), rt.policy, rt.mirror, factory) is None
    for jid in ids[1:]:
        assert call(soap, "getContentConvertStatus", [("jobId", jid)]).status == 508


def test_delete_racing_polls_on_postgres(make_runtime, pg_url, clock):
    rt = make_runtime(database_url=pg_url, broker=False)
    client = add_client(rt)
    add_factory(rt)
    srv = start_server(rt)
    try:
        with rt.db.read_session() as s:
            factory = rt.auth.factory(s, "factory-1", "factory-secret-1", rt.now())
        for _round in range(3):
            ids = [submit_job(rt, client)[0] for _ in range(150)]
            clock.advance(1)
            handed: list[int] = []
            lock = threading.Lock()
            start = threading.Barrier(5)
            some_handed, delete_done = threading.Event(), threading.Event()

            def poller(start=start, lock=lock, handed=handed, some_handed=some_handed, delete_done=delete_done) -> None:  # type: ignore[no-untyped-def]
                start.wait()
                while True:
                    c = poll(rt.db, rt.now(), rt.policy, rt.mirror, factory)
                    if c is None:
                        return
                    with lock:
                        handed.append(c.id)
                        if len(handed) >= 5:
                            some_handed.set()
                    if some_handed.is_set() and not delete_done.is_set():
                        # Keep polling while the delete runs, but slowly enough that the backlog
                        # outlasts the delete's start (a claim takes ~1 ms: 150 jobs were all handed
                        # out before the delete's request arrived).
                        time.sleep(0.02)

            threads = [threading.Thread(target=poller) for _ in range(4)]
            for t in threads:
                t.start()
            start.wait()
            assert some_handed.wait(30)  # delete while the pollers are mid-way through the backlog
            r = call(srv, "deleteContentConversions", [("deleteFrom", "2000-01-01T00:00:00Z")])
            delete_done.set()
            for t in threads:
                t.join(30)
            assert r.status == 200
            with rt.db.read_session() as s:
                states = dict(s.execute(select(Job.id, Job.state).where(Job.id.in_(ids), Job.state != DELETED)).all())
            deleted = set(ids) - set(states)  # gone (PostgreSQL) or DELETED (SQLite)
            assert len(handed) == len(set(handed))  # no job handed out twice
            assert deleted.isdisjoint(handed)  # never both deleted and handed out
            assert deleted | set(handed) == set(ids)  # and nothing left behind
            assert int(r.get("deletedCount")) == len(deleted)
            assert handed and deleted  # the delete really ran while jobs were being handed out
            # the listing after the 200 shows no deleted job
            listed = set(_listed(srv))
            assert listed.isdisjoint(deleted)
            # clear this round's claims so the next round starts clean
            with rt.db.session() as s:
                s.execute(Job.__table__.update().where(Job.id.in_(handed)).values(state=DELETED))
    finally:
        srv.stop()
