"""Farm policy, issue 13 points 4-6: the result cache and in-flight merging, permanent failures and
quarantine, cancellation. Over SOAP and XML-RPC on a live server, on SQLite and PostgreSQL, with a
FakeClock (leases expire by moving time, and beat's reclaim runs by hand)."""

from __future__ import annotations

import base64
import xmlrpc.client
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from app.db.models import Blob, ContentStrike, Job, Result
from app.services import maintenance, quarantine
from app.services.ports import NullMirror
from tests.conftest import add_client, add_factory, start_server
from tests.integration.soap.soapkit import Reply, call
from tests.integration.xmlrpc.xrkit import proxy

DOC = b"PK fake odt bytes of the farm tests"
RESULT = b"%PDF-1.7 converted once"
TARGET = [("application", "LibreOffice Writer"), ("version", "7.4"), ("format", "pdf")]


class RecordingMirror(NullMirror):
    """The database alone, with every publish recorded: "no message published" is checkable."""

    def __init__(self) -> None:
        self.published: list[int] = []

    def publish(self, job_id: int, application: str, version: str) -> None:
        self.published.append(job_id)


@pytest.fixture
def farm(make_runtime, any_db_url) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    rt = make_runtime(broker=False, database_url=any_db_url)
    rt.mirror = RecordingMirror()
    add_client(rt)  # petshow / Wf
    add_client(rt, "other", "Ot")
    for i in (1, 2, 3):
        add_factory(rt, f"factory-{i}", f"factory-secret-{i}")
    srv = start_server(rt)
    srv.rt = rt  # type: ignore[attr-defined]
    yield srv
    srv.stop()


def factory(srv: Any, i: int = 1) -> xmlrpc.client.ServerProxy:
    return proxy(srv.url, f"factory-{i}", f"factory-secret-{i}")


def upload(srv: Any, data: bytes = DOC, *, client: str = "petshow", secret: str = "Wf") -> str:
    r = call(srv, "contentUpload", [("content", base64.b64encode(data).decode()), ("filename", "letter.odt")], client=client, secret=secret)
    assert r.status == 200, r.text
    return r.get("contentIdentifier")  # type: ignore[return-value]


def convert(srv: Any, data: bytes = DOC, *, extra: list[tuple[str, object]] | None = None, client: str = "petshow", secret: str = "Wf") -> Reply:
    ident = upload(srv, data, client=client, secret=secret)
    return call(srv, "contentConvert", [("contentIdentifier", ident), *TARGET, *(extra or [])], client=client, secret=secret)


def job_of(r: Reply) -> int:
    assert r.status == 200, r.text
    return int(r.get("jobId"))  # type: ignore[arg-type]


def status(srv: Any, job_id: int, *, client: str = "petshow", secret: str = "Wf") -> Reply:
    return call(srv, "getContentConvertStatus", [("jobId", job_id)], client=client, secret=secret)


def result_bytes(srv: Any, job_id: int) -> bytes:
    r = call(srv, "getContentConvertResult", [("jobId", job_id)])
    assert r.status == 200, r.text
    return b"".join(base64.b64decode(c.text or "") for c in r.body.findall("content"))


def run_once(srv: Any, i: int = 1, data: bytes = RESULT) -> int:
    """Factory i polls, extends and finishes the job it gets; the job's id."""
    fp = factory(srv, i)
    job = fp.jobs.poll(f"factory-{i}")
    assert job, "the factory got no job"
    fp.jobs.extend(f"factory-{i}", job["job"], job["lease"])
    fp.jobs.finish(f"factory-{i}", job["job"], "pdf", xmlrpc.client.Binary(data), job["lease"])
    return guid_to_id(srv, job["job"])


def guid_to_id(srv: Any, guid: str) -> int:
    with srv.rt.db.read_session() as s:
        return int(s.scalar(select(Job.id).where(Job.guid == guid)))


def purge(srv: Any) -> None:
    maintenance.purge_deleted_all(srv.rt.db, srv.rt.now())


def reclaim(srv: Any) -> None:
    rt = srv.rt
    maintenance.reclaim_all(rt.db, rt.now(), rt.notifier, rt.mirror)


def expire_lease(srv: Any) -> None:
    srv.rt.clock.advance(srv.rt.settings.lease_seconds + 1)
    reclaim(srv)


# ---------------------------------------------------------------- result cache


def test_identical_convert_completes_at_once_and_deleting_either_keeps_the_other_result(farm) -> None:  # type: ignore[no-untyped-def]
    first = job_of(convert(farm))
    assert run_once(farm) == first
    published = list(farm.rt.mirror.published)

    second = job_of(convert(farm))
    third = job_of(convert(farm))
    st = status(farm, second)
    assert (st.get("jobStatus"), st.get("cachedFrom")) == ("3", str(first))
    assert status(farm, third).get("cachedFrom") == str(first)
    assert status(farm, first).get("cachedFrom") is None  # the converted one shares with nobody
    # No factory call, no message: nothing to poll, nothing published.
    assert factory(farm, 2).jobs.poll("factory-2") == {}
    assert farm.rt.mirror.published == published
    assert result_bytes(farm, second) == RESULT
    with farm.rt.db.read_session() as s:
        blobs = set(s.scalars(select(Result.blob_id)).all())
    assert len(blobs) == 1  # stored once

    # Deleting the job that was converted keeps the cached ones' result, after the purge too.
    assert call(farm, "deleteContentConversion", [("jobId", first)]).status == 200
    purge(farm)
    assert result_bytes(farm, second) == RESULT
    # Deleting a cached one keeps the others'.
    assert call(farm, "deleteContentConversion", [("jobId", second)]).status == 200
    purge(farm)
    assert result_bytes(farm, third) == RESULT
    # The last one gone, the bytes go.
    assert call(farm, "deleteContentConversion", [("jobId", third)]).status == 200
    purge(farm)
    with farm.rt.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Blob).where(Blob.id.in_(blobs))) == 0


def test_follower_completes_with_its_leader(farm) -> None:  # type: ignore[no-untyped-def]
    leader = job_of(convert(farm))
    follower = job_of(convert(farm))
    assert status(farm, follower).get("jobStatus") == "0"
    assert farm.rt.mirror.published == [leader]  # the follower is not published...
    assert run_once(farm) == leader  # ...nor handed out
    assert factory(farm, 2).jobs.poll("factory-2") == {}
    st = status(farm, follower)
    assert (st.get("jobStatus"), st.get("cachedFrom")) == ("3", str(leader))
    assert result_bytes(farm, follower) == RESULT


def test_follower_is_queued_on_its_own_when_its_leader_fails(farm) -> None:  # type: ignore[no-untyped-def]
    leader = job_of(convert(farm))
    follower = job_of(convert(farm))
    fp = factory(farm)
    job = fp.jobs.poll("factory-1")
    assert guid_to_id(farm, job["job"]) == leader
    # A permanent failure: FAILED at once, no attempt left to retry.
    assert fp.jobs.fail("factory-1", job["job"], "the document does not load", job["lease"], True) == {"jobStatus": 4}
    st = status(farm, leader)
    assert (st.get("jobStatus"), st.get("failureReason"), st.get("attempts")) == ("4", "the document does not load", "1")
    assert farm.rt.mirror.published == [leader, follower]
    assert run_once(farm, 2) == follower
    st = status(farm, follower)
    assert (st.get("jobStatus"), st.get("cachedFrom")) == ("3", None)


def test_follower_is_queued_on_its_own_when_its_leader_is_deleted(farm) -> None:  # type: ignore[no-untyped-def]
    leader = job_of(convert(farm))
    follower = job_of(convert(farm))
    assert call(farm, "deleteContentConversion", [("jobId", leader)]).status == 200
    assert run_once(farm) == follower


def test_no_cache_opts_out(farm) -> None:  # type: ignore[no-untyped-def]
    first = job_of(convert(farm))
    run_once(farm)
    again = job_of(convert(farm, extra=[("noCache", "true")]))
    assert status(farm, again).get("jobStatus") == "0"
    assert run_once(farm, 2, b"%PDF-1.7 converted again") == again
    assert result_bytes(farm, again) == b"%PDF-1.7 converted again"
    assert result_bytes(farm, first) == RESULT


def test_no_sharing_across_clients_by_default(farm) -> None:  # type: ignore[no-untyped-def]
    job_of(convert(farm))
    run_once(farm)
    theirs = job_of(convert(farm, client="other", secret="Ot"))
    st = status(farm, theirs, client="other", secret="Ot")
    assert (st.get("jobStatus"), st.get("cachedFrom")) == ("0", None)
    assert run_once(farm, 2) == theirs


def test_sharing_across_clients_when_the_operator_enables_it(make_runtime, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rt = make_runtime(broker=False, share_results_across_clients=True)
    add_client(rt)
    add_client(rt, "other", "Ot")
    add_factory(rt, "factory-1", "factory-secret-1")
    srv = start_server(rt)
    srv.rt = rt  # type: ignore[attr-defined]
    try:
        mine = job_of(convert(srv))
        run_once(srv)
        theirs = job_of(convert(srv, client="other", secret="Ot"))
        st = status(srv, theirs, client="other", secret="Ot")
        assert (st.get("jobStatus"), st.get("cachedFrom")) == ("3", str(mine))
    finally:
        srv.stop()


# ---------------------------------------------------------------- quarantine


def test_document_that_hangs_two_factories_is_quarantined_and_never_reaches_a_third(farm) -> None:  # type: ignore[no-untyped-def]
    first = job_of(convert(farm))
    waiting = job_of(convert(farm, extra=[("noCache", "true")]))  # queued on its own, same document
    other = job_of(convert(farm, b"PK another document"))
    assert guid_to_id(farm, factory(farm, 1).jobs.poll("factory-1")["job"]) == first
    expire_lease(farm)  # a hang on factory 1: requeued (attempt 1 of 3)
    assert status(farm, first).get("jobStatus") == "0"
    assert guid_to_id(farm, factory(farm, 2).jobs.poll("factory-2")["job"]) == first
    expire_lease(farm)  # the same document hangs factory 2: quarantined
    for job_id in (first, waiting):
        st = status(farm, job_id)
        assert st.get("jobStatus") == "4"
        assert (st.get("failureReason") or "").startswith("quarantined: ")
    # Factory 3 only ever sees the other document.
    assert run_once(farm, 3) == other
    assert factory(farm, 3).jobs.poll("factory-3") == {}
    refused = convert(farm)
    assert refused.status == 541 and "quarantined" in (refused.get("statusMessage") or "")
    assert refused.get("jobId") is None
    with farm.rt.db.read_session() as s:
        held = quarantine.listing(s)
    assert [(q.factories, q.released_at) for q in held] == [(("factory-1", "factory-2"), None)]

    # Released, it converts again.
    with farm.rt.db.session() as s:
        quarantine.release(s, farm.rt.now(), held[0].sha256)
    again = job_of(convert(farm))
    assert run_once(farm, 3) == again
    assert result_bytes(farm, again) == RESULT


def test_permanent_failures_on_two_factories_quarantine_the_document(farm) -> None:  # type: ignore[no-untyped-def]
    for i in (1, 2):
        job_id = job_of(convert(farm))
        fp = factory(farm, i)
        job = fp.jobs.poll(f"factory-{i}")
        assert guid_to_id(farm, job["job"]) == job_id
        assert fp.jobs.fail(f"factory-{i}", job["job"], "not an ODF package", job["lease"], True) == {"jobStatus": 4}
    assert convert(farm).status == 541


def test_one_factory_failing_twice_does_not_quarantine(farm) -> None:  # type: ignore[no-untyped-def]
    for _ in (1, 2):
        job_of(convert(farm))
        fp = factory(farm, 1)
        job = fp.jobs.poll("factory-1")
        fp.jobs.fail("factory-1", job["job"], "not an ODF package", job["lease"], True)
    assert convert(farm).status == 200


# ---------------------------------------------------------------- cancellation


def test_cancel_a_queued_job_removes_it(farm) -> None:  # type: ignore[no-untyped-def]
    job_id = job_of(convert(farm))
    assert call(farm, "cancelContentConversion", [("jobId", job_id)]).status == 200
    assert status(farm, job_id).status == 508
    assert factory(farm).jobs.poll("factory-1") == {}
    assert call(farm, "cancelContentConversion", [("jobId", job_id)]).status == 508
    assert call(farm, "cancelContentConversion", [("jobId", 999999)]).status == 508


def test_cancel_someone_elses_job_is_refused(farm) -> None:  # type: ignore[no-untyped-def]
    job_id = job_of(convert(farm))
    assert call(farm, "cancelContentConversion", [("jobId", job_id)], client="other", secret="Ot").status == 532
    assert status(farm, job_id).get("jobStatus") == "0"


def test_cancel_in_flight_stops_at_the_next_extend_and_a_late_finish_gets_409(farm) -> None:  # type: ignore[no-untyped-def]
    job_id = job_of(convert(farm))
    fp = factory(farm)
    job = fp.jobs.poll("factory-1")
    assert fp.jobs.extend("factory-1", job["job"], job["lease"])["cancelled"] is False
    assert call(farm, "cancelContentConversion", [("jobId", job_id)]).status == 200
    assert status(farm, job_id).get("jobStatus") == "2"  # marked; its factory learns it next
    assert fp.jobs.extend("factory-1", job["job"], job["lease"])["cancelled"] is True
    st = status(farm, job_id)
    assert (st.get("jobStatus"), st.get("failureReason")) == ("4", "cancelled by client")
    for late in (
        lambda: fp.jobs.finish("factory-1", job["job"], "pdf", xmlrpc.client.Binary(RESULT), job["lease"]),
        lambda: fp.jobs.fail("factory-1", job["job"], "stopped", job["lease"]),
        lambda: fp.jobs.extend("factory-1", job["job"], job["lease"]),
    ):
        with pytest.raises(xmlrpc.client.Fault) as err:
            late()
        assert err.value.faultCode == 409
    assert call(farm, "cancelContentConversion", [("jobId", job_id)]).status == 518  # it has ended


def test_expired_lease_of_a_cancelled_job_ends_it_instead_of_requeueing(farm) -> None:  # type: ignore[no-untyped-def]
    job_id = job_of(convert(farm))
    factory(farm).jobs.poll("factory-1")
    assert call(farm, "cancelContentConversion", [("jobId", job_id)]).status == 200
    expire_lease(farm)
    st = status(farm, job_id)
    assert (st.get("jobStatus"), st.get("failureReason")) == ("4", "cancelled by client")
    with farm.rt.db.read_session() as s:  # the client's doing, not the document's: no strike
        assert s.scalar(select(func.count()).select_from(ContentStrike)) == 0


def test_cancelled_leader_releases_its_follower(farm) -> None:  # type: ignore[no-untyped-def]
    leader = job_of(convert(farm))
    fp = factory(farm)
    job = fp.jobs.poll("factory-1")
    follower = job_of(convert(farm))
    assert status(farm, follower).get("jobStatus") == "0"
    assert call(farm, "cancelContentConversion", [("jobId", leader)]).status == 200
    assert fp.jobs.extend("factory-1", job["job"], job["lease"])["cancelled"] is True
    assert run_once(farm, 2) == follower


def test_retention_removes_the_converted_job_but_keeps_a_newer_cached_result_and_old_strikes_go(farm) -> None:  # type: ignore[no-untyped-def]
    first = job_of(convert(farm))
    run_once(farm)
    farm.rt.clock.advance(20 * 86400)
    cached = job_of(convert(farm))
    assert status(farm, cached).get("cachedFrom") == str(first)
    with farm.rt.db.session() as s:
        quarantine.strike(s, farm.rt.now(), farm.rt.notifier, job_id=cached, factory="factory-1", reason="hung")
    farm.rt.clock.advance(15 * 86400)  # the converted job is 35 days old, the cached one 15, the strike 15
    with farm.rt.db.session() as s:
        assert maintenance.retention_purge(s, farm.rt.now(), 30) == 1
    assert status(farm, first).status == 508
    assert result_bytes(farm, cached) == RESULT
    with farm.rt.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(ContentStrike)) == 1
    farm.rt.clock.advance(16 * 86400)
    with farm.rt.db.session() as s:
        maintenance.retention_purge(s, farm.rt.now(), 30)
    with farm.rt.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(ContentStrike)) == 0
        assert s.scalar(select(func.count()).select_from(Blob)) == 0  # the last job gone, its bytes and upload too


def test_operator_job_view_shows_cache_and_cancel_fields(farm) -> None:  # type: ignore[no-untyped-def]
    from app.services import admin

    leader = job_of(convert(farm))
    factory(farm).jobs.poll("factory-1")
    follower = job_of(convert(farm))
    assert call(farm, "cancelContentConversion", [("jobId", leader)]).status == 200
    with farm.rt.db.read_session() as s:
        a, b = admin.show_job(s, str(leader)), admin.show_job(s, str(follower))
    assert (a["cancelRequested"], a["followsJob"], a["cachedFrom"]) == (True, None, None)
    assert (b["cancelRequested"], b["followsJob"]) == (False, leader)
