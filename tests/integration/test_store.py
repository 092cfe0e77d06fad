"""The job store on real SQLite and PostgreSQL: atomic claims, fencing, reclaim, deletes, purge."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import event, func, select

from app.db.models import Blob, Content, Job, Result
from app.domain.errors import (
    AuthenticationFailed,
    BadArgument,
    BadJobState,
    FactoryDisabled,
    LeaseNotHeld,
    NotFound,
    NotOwner,
)
from app.domain.matching import WorkerSpec
from app.domain.states import DELETED, JobState
from app.services import admin, claims, client_views, leases, maintenance, submission
from app.services.poll import poll
from tests.conftest import WRITER, add_client, add_factory, submit_job

WRITER_SPEC = (WorkerSpec.parse(WRITER),)


@pytest.fixture
def rt(make_runtime, any_db_url):  # type: ignore[no-untyped-def]
    return make_runtime(database_url=any_db_url, broker=False)


def _claim(rt, owner="factory-1", workers=WRITER_SPEC):  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        return claims.claim(s, rt.now(), rt.policy, owner=owner, workers=workers)


def _state(rt, job_id):  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        return s.scalar(select(Job.state).where(Job.id == job_id))


def test_race_every_job_handed_out_once(rt):
    """24 concurrent claimers, 200 jobs: each job is claimed exactly once, none is lost."""
    client = add_client(rt)
    ids = [submit_job(rt, client)[0] for _ in range(200)]
    got: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(24)
    errors: list[BaseException] = []

    def claimer(n: int) -> None:
        try:
            barrier.wait()
            while True:
                c = _claim(rt, owner=f"f{n}")
                if c is None:
                    return
                with lock:
                    got.append(c.id)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors[:3]
    dupes = [i for i, n in Counter(got).items() if n > 1]
    assert dupes == []
    assert sorted(got) == sorted(ids)
    with rt.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.state == 1)) == 200


def test_oldest_first_across_pairs_and_matching(rt):
    client = add_client(rt)
    calc = "LibreOffice Calc|7.4|ods|pdf"
    workers = (WorkerSpec.parse(WRITER), WorkerSpec.parse(calc))
    w1, _ = submit_job(rt, client, filename="a.odt")
    c1, _ = submit_job(rt, client, filename="b.ods", application="LibreOffice Calc", fmt="pdf")
    png_calc, _ = submit_job(rt, client, filename="c.ods", application="LibreOffice Calc", fmt="png")  # unsupported format
    other, _ = submit_job(rt, client, filename="d.odt", version="6.0")  # unserved version
    w2, _ = submit_job(rt, client, filename="e.odt", fmt="")  # empty format: any worker
    order = [_claim(rt, workers=workers) for _ in range(4)]
    assert [c.id if c else None for c in order] == [w1, c1, w2, None]
    assert _state(rt, png_calc) == 0 and _state(rt, other) == 0


def test_claim_details_and_fresh_token(rt, clock):
    client = add_client(rt)
    job_id, guid = submit_job(rt, client, data=b"x" * 3000, page_start=2, page_end=3)
    c = _claim(rt)
    assert (c.id, c.guid, c.page_start, c.page_end, c.attempt, c.size) == (job_id, guid, 2, 3, 1, 3000)
    assert c.lease_expires == clock() + __import__("datetime").timedelta(seconds=300)
    with rt.db.session() as s:
        leases.fail(s, rt.now(), rt.policy, rt.notifier, rt.mirror, guid=guid, owner="factory-1", token=c.lease_token, reason="boom")
    c2 = _claim(rt)
    assert c2.id == job_id and c2.attempt == 2 and c2.lease_token != c.lease_token


def test_fencing_stale_holders_change_nothing(rt, clock):
    client = add_client(rt)
    job_id, guid = submit_job(rt, client)
    c = _claim(rt)
    kw = dict(guid=guid, owner="factory-1")
    for owner, token in [("factory-2", c.lease_token), ("factory-1", "wrong-token")]:
        with pytest.raises(LeaseNotHeld), rt.db.session() as s:
            leases.extend(s, rt.now(), rt.policy, guid=guid, owner=owner, token=token)
        with pytest.raises(LeaseNotHeld), rt.db.session() as s:
            leases.finish(s, rt.now(), rt.notifier, guid=guid, owner=owner, token=token, fmt="pdf", parts=b"%PDF", max_bytes=10**6)
        with pytest.raises(LeaseNotHeld), rt.db.session() as s:
            leases.fail(s, rt.now(), rt.policy, rt.notifier, rt.mirror, guid=guid, owner=owner, token=token, reason="x")
    assert _state(rt, job_id) == 1
    # extend: 1 -> 2, renewed
    with rt.db.session() as s:
        ext = leases.extend(s, rt.now(), rt.policy, token=c.lease_token, **kw)
    assert _state(rt, job_id) == 2 and not ext.cancelled
    # after expiry: nothing changes, finish refused
    clock.advance(301)
    with pytest.raises(LeaseNotHeld), rt.db.session() as s:
        leases.finish(s, rt.now(), rt.notifier, token=c.lease_token, fmt="pdf", parts=b"%PDF", max_bytes=10**6, **kw)
    assert _state(rt, job_id) == 2
    with pytest.raises(NotFound), rt.db.session() as s:
        leases.extend(s, rt.now(), rt.policy, guid="no-such-guid", owner="factory-1", token=None)


def test_extend_is_capped_per_attempt(make_runtime, any_db_url, clock):
    rt = make_runtime(database_url=any_db_url, broker=False, lease_seconds=300, max_lease_total_seconds=700)
    client = add_client(rt)
    _, guid = submit_job(rt, client)
    c = _claim(rt)
    results = []
    for _ in range(3):  # at +200, +400, +600: the third one reaches the cap (+700)
        clock.advance(200)
        with rt.db.session() as s:
            results.append(leases.extend(s, rt.now(), rt.policy, guid=guid, owner="factory-1", token=c.lease_token))
    cap = c.lease_expires - __import__("datetime").timedelta(seconds=300) + __import__("datetime").timedelta(seconds=700)
    assert results[-1].lease_expires == cap and results[-1].cancelled
    assert not results[0].cancelled
    clock.advance(100)  # now past the cap
    with pytest.raises(LeaseNotHeld), rt.db.session() as s:
        leases.extend(s, rt.now(), rt.policy, guid=guid, owner="factory-1", token=c.lease_token)


def test_finish_stores_result_and_checks_format(rt):
    client = add_client(rt)
    job_id, guid = submit_job(rt, client, fmt="pdf")
    c = _claim(rt)
    with pytest.raises(BadArgument), rt.db.session() as s:
        leases.finish(s, rt.now(), rt.notifier, guid=guid, owner="factory-1", token=c.lease_token, fmt="png", parts=b"x", max_bytes=10**6)
    payload = bytes(range(256)) * 5000  # > 1 MiB: several chunks
    with rt.db.session() as s:
        rguid = leases.finish(s, rt.now(), rt.notifier, guid=guid, owner="factory-1", token=c.lease_token, fmt="pdf", parts=payload, max_bytes=10**7).result_guid
    assert len(rguid) == 36 and _state(rt, job_id) == 3
    from app.db.blobs import read_blob

    with rt.db.read_session() as s:
        res = client_views.result_of(s, client, job_id)
        assert (res.format, res.filename) == ("pdf", "doc.pdf")
        assert read_blob(s, res.blob_id) == payload


def test_reclaim_counts_attempts_then_fails(make_runtime, any_db_url, clock):
    rt = make_runtime(database_url=any_db_url, broker=False, max_attempts=2)
    client = add_client(rt)
    job_id, _ = submit_job(rt, client)
    for attempt, expected in [(1, JobState.QUEUED), (2, JobState.FAILED)]:
        c = _claim(rt)
        assert c.attempt == attempt
        with rt.db.session() as s:
            assert maintenance.reclaim_expired(s, rt.now(), rt.notifier, rt.mirror) == []  # not yet expired
        clock.advance(300)
        with rt.db.session() as s:
            assert maintenance.reclaim_expired(s, rt.now(), rt.notifier, rt.mirror) == [(job_id, expected)]
    with rt.db.read_session() as s:
        job = s.get(Job, job_id)
        assert job.state == 4 and job.attempts == 2 and "lease expired" in job.failure_reason
    assert _claim(rt) is None


def test_delete_one_rules(rt):
    a, b = add_client(rt, "a", "secret-a"), add_client(rt, "b", "secret-b")
    queued, _ = submit_job(rt, a)
    inflight, _ = submit_job(rt, a)
    with rt.db.session() as s:  # claim the second one specifically
        claims.claim(s, rt.now(), rt.policy, owner="f", workers=WRITER_SPEC, job_id=inflight)
    with pytest.raises(NotOwner), rt.db.session() as s:
        client_views.delete_one(s, rt.now(), b, queued)
    with pytest.raises(BadJobState), rt.db.session() as s:
        client_views.delete_one(s, rt.now(), a, inflight)
    with pytest.raises(NotFound), rt.db.session() as s:
        client_views.delete_one(s, rt.now(), a, 999999)
    with rt.db.session() as s:
        client_views.delete_one(s, rt.now(), a, queued)
    with pytest.raises(NotFound), rt.db.session() as s:
        client_views.delete_one(s, rt.now(), a, queued)
    with rt.db.read_session() as s:
        assert client_views.counts(s, a) == [(1, 1)]
        assert client_views.list_jobs(s, a) == [(inflight, 1)]
        with pytest.raises(BadArgument):
            client_views.list_jobs(s, a, state=DELETED)  # the internal state is never listable
    assert _claim(rt) is None  # the deleted job is never handed out


def test_delete_range_hides_skips_and_purges(rt, clock):
    a = add_client(rt)
    t0 = clock()
    ids = []
    for _ in range(5):
        ids.append(submit_job(rt, a)[0])
        clock.advance(10)
    with rt.db.session() as s:
        claims.claim(s, rt.now(), rt.policy, owner="f", workers=WRITER_SPEC, job_id=ids[1])
    import datetime as dt

    with pytest.raises(BadArgument), rt.db.session() as s:
        client_views.delete_range(s, rt.now(), a, t0 + dt.timedelta(seconds=30), t0)
    with rt.db.session() as s:  # [t0, t0+30): jobs 0,1,2; job 1 in flight
        r = client_views.delete_range(s, rt.now(), a, t0, t0 + dt.timedelta(seconds=30))
    assert (r.deleted, r.skipped) == (2, 1)
    with rt.db.read_session() as s:
        assert [i for i, _ in client_views.list_jobs(s, a)] == [ids[1], ids[3], ids[4]]
    with rt.db.session() as s:
        r = client_views.delete_range(s, rt.now(), a, t0, None)  # to now
    assert (r.deleted, r.skipped) == (2, 1)
    with rt.db.read_session() as s:  # the jobs are gone (or DELETED on SQLite); their uploads wait for beat
        assert s.scalar(select(func.count()).select_from(Job).where(Job.state != DELETED)) == 1
        assert s.scalar(select(func.count()).select_from(Content)) == 5
    with rt.db.session() as s:  # PostgreSQL: the 4 uploads only removed jobs used; SQLite: the 4 jobs
        assert maintenance.purge_deleted(s, rt.now()) == 4
    with rt.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == 1
        assert s.scalar(select(func.count()).select_from(Content)) == 1
        assert s.scalar(select(func.count()).select_from(Blob)) == 1


def _finish(rt, claimed, data):  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        leases.finish(s, rt.now(), rt.notifier, guid=claimed.guid, owner="factory-1", token=claimed.lease_token,
                      fmt="pdf", parts=data, max_bytes=10**6)


def test_range_delete_of_completed_jobs_frees_their_bytes_on_purge_but_not_shared_ones(rt, clock):
    """A range delete removes the rows at once; beat's purge then frees the uploads and result bytes
    they left, except bytes a surviving job's result still shares (result cache)."""
    import datetime as dt

    a = add_client(rt)
    add_factory(rt)
    t0 = clock()
    leader, _ = submit_job(rt, a, b"PK shared document")
    _finish(rt, _claim(rt), b"%PDF shared result")
    clock.advance(10)
    own, _ = submit_job(rt, a, b"PK own document")
    _finish(rt, _claim(rt), b"%PDF own result")
    clock.advance(50)
    with rt.db.session() as s:  # a cache hit: its result shares the leader's bytes
        content = submission.upload(s, rt.now(), client_id=a, filename="doc.odt", parts=b"PK shared document", max_bytes=10**6)
        hit = submission.submit(s, rt.now(), rt.mirror, client_id=a, content=content, application="LibreOffice Writer",
                                version="7.4", fmt="pdf", notifier=rt.notifier).id
    with rt.db.read_session() as s:
        shared = client_views.result_of(s, a, hit).blob_id
        assert client_views.result_of(s, a, leader).blob_id == shared
        own_bytes = client_views.result_of(s, a, own).blob_id
    with rt.db.session() as s:
        r = client_views.delete_range(s, rt.now(), a, t0, t0 + dt.timedelta(seconds=30))
    assert (r.deleted, r.skipped) == (2, 0)
    with rt.db.read_session() as s:  # the jobs are gone at once (DELETED on SQLite), the bytes wait for beat
        assert set(s.scalars(select(Job.id).where(Job.state != DELETED))) == {hit}
        assert s.get(Blob, own_bytes) is not None
    with rt.db.session() as s:
        assert maintenance.purge_deleted(s, rt.now()) > 0
    with rt.db.read_session() as s:
        assert set(s.scalars(select(Job.id))) == {hit}
        assert set(s.scalars(select(Result.job_id))) == {hit}
        assert s.get(Blob, own_bytes) is None
        assert s.get(Blob, shared) is not None
        assert client_views.result_of(s, a, hit).blob_id == shared
        assert s.scalar(select(func.count()).select_from(Content)) == 1  # the hit's upload only


def test_retention_purges_old_terminal_jobs(rt, clock):
    a = add_client(rt)
    job_id, guid = submit_job(rt, a)
    keep, _ = submit_job(rt, a)
    c = _claim(rt)
    with rt.db.session() as s:
        leases.finish(s, rt.now(), rt.notifier, guid=guid, owner="factory-1", token=c.lease_token, fmt="pdf", parts=b"%PDF", max_bytes=100)
    clock.advance(31 * 86400)
    with rt.db.session() as s:
        assert maintenance.retention_purge(s, rt.now(), 30) == 1
    with rt.db.read_session() as s:
        assert [i for i, _ in client_views.list_jobs(s, a)] == [keep]


def test_authentication_cache_and_timing_equivalence(rt):
    add_client(rt, "petshow", "Wf")
    add_factory(rt, "f1", "factory-secret-1")
    with rt.db.read_session() as s:
        assert rt.auth.client(s, "petshow", "Wf", rt.now()).name == "petshow"
        for name, secret in [("petshow", "wrong"), ("nobody", "Wf")]:
            with pytest.raises(AuthenticationFailed):
                rt.auth.client(s, name, secret, rt.now())
        f = rt.auth.factory(s, "f1", "factory-secret-1", rt.now())
        assert [w.pair for w in f.workers] == [("LibreOffice Writer", "7.4")]
    with rt.db.session() as s:
        admin.set_factory_disabled(s, "f1", True)
    rt.auth.clear()
    with rt.db.read_session() as s, pytest.raises(FactoryDisabled):
        rt.auth.factory(s, "f1", "factory-secret-1", rt.now())


def test_empty_poll_writes_nothing(rt):
    add_factory(rt, "f1", "factory-secret-1")
    statements: list[str] = []
    with rt.db.read_session() as s:
        f = rt.auth.factory(s, "f1", "factory-secret-1", rt.now())
    assert poll(rt.db, rt.now(), rt.policy, rt.mirror, f) is None  # first poll marks the factory active

    def record(conn, cursor, statement, *a):  # type: ignore[no-untyped-def]
        statements.append(statement.split()[0].upper())

    event.listen(rt.db.engine, "before_cursor_execute", record)
    try:
        for _ in range(5):
            assert poll(rt.db, rt.now(), rt.policy, rt.mirror, f) is None
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", record)
    writes = [st for st in statements if st in ("INSERT", "UPDATE", "DELETE")]
    assert "SELECT" in statements and writes == [], statements


def test_delete_marks_are_invisible_to_poll_even_when_racing(make_runtime, pg_url):
    """PostgreSQL: a range delete and 8 claimers race; every job ends deleted XOR handed out."""
    rt = make_runtime(database_url=pg_url, broker=False)
    a = add_client(rt)
    ids = [submit_job(rt, a)[0] for _ in range(300)]
    claimed: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(9)
    deleted = {}

    def claimer(n: int) -> None:
        start.wait()
        while True:
            c = _claim(rt, owner=f"f{n}")
            if c is None:
                return
            with lock:
                claimed.append(c.id)

    def deleter() -> None:
        start.wait()
        import datetime as dt

        with rt.db.session() as s:
            r = client_views.delete_range(s, rt.now() + dt.timedelta(seconds=1), a, rt.now() - dt.timedelta(days=1), None)
        deleted["r"] = r

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(8)] + [threading.Thread(target=deleter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    with rt.db.read_session() as s:
        states = dict(s.execute(select(Job.id, Job.state)).all())
    assert len(claimed) == len(set(claimed))
    for i in ids:  # a deleted job's row is gone
        assert (i not in states) != (i in claimed), (i, states.get(i))
    assert deleted["r"].deleted == sum(1 for i in ids if i not in states)


def test_range_delete_counts_a_job_finishing_meanwhile_exactly_once(make_runtime, pg_url):
    """PostgreSQL: a factory finishes an in-flight job right after the range UPDATE ran. The job must
    end counted once: deleted, or skipped (and then COMPLETE), never neither."""
    import datetime as dt

    rt = make_runtime(database_url=pg_url, broker=False)
    a = add_client(rt)
    job_id, _ = submit_job(rt, a)
    claimed = _claim(rt)
    assert claimed is not None and claimed.id == job_id
    deleter = threading.current_thread()
    go, finished = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def finisher() -> None:
        go.wait(30)
        with rt.db.session() as s:
            outcome["result"] = leases.finish(
                s, rt.now(), rt.notifier, guid=claimed.guid, owner="factory-1", token=claimed.lease_token,
                fmt="pdf", parts=b"%PDF", max_bytes=10**6,
            )
        finished.set()

    def after_update(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if threading.current_thread() is deleter and "DELETE FROM JOBS" in statement.upper():
            go.set()
            finished.wait(2)  # the finish commits now, unless the delete holds the job's row

    t = threading.Thread(target=finisher)
    t.start()
    event.listen(rt.db.engine, "after_cursor_execute", after_update)
    try:
        with rt.db.session() as s:
            r = client_views.delete_range(s, rt.now() + dt.timedelta(seconds=1), a, rt.now() - dt.timedelta(days=1), None)
    finally:
        event.remove(rt.db.engine, "after_cursor_execute", after_update)
        go.set()
        t.join(30)
    state = _state(rt, job_id)
    assert (r.deleted, r.skipped) == ((1, 0) if state is None else (0, 1)), (r, state)
    assert state == (None if r.deleted else JobState.COMPLETE) and "result" in outcome


def test_polls_reclaim_expired_leases_when_beat_is_down(rt, clock):
    """With no beat running, a poll after expiry puts the lease back (paced: once per interval)."""
    from datetime import timedelta

    from app.services.poll import LazyReclaimer

    add_factory(rt, "f1", "factory-secret-1")
    add_factory(rt, "f2", "factory-secret-2")
    client = add_client(rt)
    job_id, _ = submit_job(rt, client)
    with rt.db.read_session() as s:
        f1 = rt.auth.factory(s, "f1", "factory-secret-1", rt.now())
        f2 = rt.auth.factory(s, "f2", "factory-secret-2", rt.now())
    reclaimer = LazyReclaimer(timedelta(seconds=15))
    lazy = (reclaimer, rt.notifier)
    first = poll(rt.db, rt.now(), rt.policy, rt.mirror, f1, reclaim=lazy)
    assert first.id == job_id and first.attempt == 1
    assert poll(rt.db, rt.now(), rt.policy, rt.mirror, f2, reclaim=lazy) is None
    clock.advance(rt.settings.lease_seconds)  # f1's lease has expired; nobody runs beat
    again = poll(rt.db, rt.now(), rt.policy, rt.mirror, f2, reclaim=lazy)
    assert again is not None and again.id == job_id and again.attempt == 2
    # paced: inside the interval the reclaimer does not even look
    assert reclaimer.due(rt.now()) is False
    clock.advance(15)
    assert reclaimer.due(rt.now()) is True


def test_remove_client_removes_its_comparisons_and_their_images(rt):
    from app.db.blobs import store_blob
    from app.db.models import BlobChunk, Comparison, ComparisonJob, ComparisonPage, ComparisonScore

    keep = add_client(rt, "keep", "secret-keep")
    gone = add_client(rt, "gone", "secret-gone")
    now = rt.now()
    with rt.db.session() as s:
        for client in (keep, gone):
            comp = Comparison(client_id=client, filename="a.odt", format="pdf", state=2, created_at=now, dpi=50)
            s.add(comp)
            s.flush()
            page = store_blob(s, b"page png " + str(client).encode(), now)
            diff = store_blob(s, b"diff png " + str(client).encode(), now)
            s.add(ComparisonJob(comparison_id=comp.id, position=0, job_id=1, application="A", version="1", page_count=1))
            s.add(ComparisonPage(comparison_id=comp.id, job_id=1, page=1, blob_id=page.id, width=1, height=1))
            s.add(ComparisonScore(comparison_id=comp.id, job_a=1, job_b=2, page=1, score=0.5, diff_blob_id=diff.id))
    with rt.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Blob)) == 4
    with rt.db.session() as s:
        admin.remove_client(s, "gone")
    with rt.db.read_session() as s:
        assert s.scalars(select(Comparison.client_id)).all() == [keep]
        assert s.scalar(select(func.count()).select_from(ComparisonPage)) == 1
        assert s.scalar(select(func.count()).select_from(ComparisonScore)) == 1
        assert s.scalar(select(func.count()).select_from(Blob)) == 2  # the kept comparison's page and diff
        assert s.scalar(select(func.count()).select_from(BlobChunk)) == 2


def test_remove_client_removes_everything_it_owns(rt):
    from app.db.models import BlobChunk, ClientApplication, Result

    keep = add_client(rt, "keep", "secret-keep")
    gone = add_client(rt, "gone", "secret-gone")
    kept_job, _ = submit_job(rt, keep)
    done_job, guid = submit_job(rt, gone, data=b"y" * 3000)
    submit_job(rt, gone)
    with rt.db.session() as s:
        c = claims.claim(s, rt.now(), rt.policy, owner="factory-1", workers=WRITER_SPEC, job_id=done_job)
    with rt.db.session() as s:  # a result, and an upload no job uses
        leases.finish(s, rt.now(), rt.notifier, guid=guid, owner="factory-1", token=c.lease_token, fmt="pdf", parts=b"%PDF", max_bytes=100)
        submission.upload(s, rt.now(), client_id=gone, filename="unused.odt", parts=b"z", max_bytes=100)
    with rt.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Result)) == 1
        assert s.scalar(select(func.count()).select_from(Blob)) == 5  # 4 uploads + 1 result
    with rt.db.session() as s:
        admin.remove_client(s, "gone")
    with rt.db.read_session() as s:
        assert s.scalars(select(ClientApplication.name)).all() == ["keep"]
        assert s.scalars(select(Job.id)).all() == [kept_job]
        assert s.scalar(select(func.count()).select_from(Result)) == 0
        assert s.scalar(select(func.count()).select_from(Content)) == 1
        assert s.scalar(select(func.count()).select_from(Blob)) == 1
        assert s.scalar(select(func.count()).select_from(BlobChunk)) == 1
