"""Beat's reclaim as a set (app.services.maintenance.reclaim_expired), on SQLite and PostgreSQL:
batch boundaries, the statements a batch costs, every outcome mixed in one batch, and a factory
finishing a job while the reclaim runs."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, update

from app.db.models import Callback, ContentStrike, Job, Quarantine
from app.domain.matching import WorkerSpec
from app.domain.states import JobState
from app.services import claims, client_views, counters, leases, maintenance
from app.services.ports import NullMirror
from tests.conftest import WRITER, add_client, submit_job

WRITER_SPEC = (WorkerSpec.parse(WRITER),)


class RecordingMirror(NullMirror):
    """Records publishes, and how they arrived (one batch, or one by one)."""

    def __init__(self) -> None:
        self.published: list[int] = []
        self.batches: list[list[int]] = []

    def publish(self, job_id: int, application: str, version: str) -> None:
        self.published.append(job_id)

    def publish_many(self, jobs: list[tuple[int, str, str]]) -> None:
        self.batches.append([j for j, _, _ in jobs])
        super().publish_many(jobs)


@pytest.fixture
def rt(make_runtime, any_db_url):  # type: ignore[no-untyped-def]
    rt = make_runtime(database_url=any_db_url, broker=False)
    rt.mirror = RecordingMirror()
    return rt


def _claim(rt: Any, owner: str = "factory-1", job_id: int | None = None) -> Any:
    with rt.db.session() as s:
        return claims.claim(s, rt.now(), rt.policy, owner=owner, workers=WRITER_SPEC, job_id=job_id)


def _jobs(rt: Any, client: int, n: int, **kw: Any) -> list[int]:
    """n jobs of n distinct documents (no result-cache followers), each claimed by its own factory."""
    ids = []
    for i in range(n):
        job_id, _ = submit_job(rt, client, f"PK document {i} {kw}".encode(), **kw)
        _claim(rt, owner=f"factory-{i}", job_id=job_id)
        ids.append(job_id)
    return ids


def _reclaim(rt: Any, limit: int) -> list[tuple[int, JobState]]:
    with rt.db.session() as s:
        return maintenance.reclaim_expired(s, rt.now(), rt.notifier, rt.mirror, limit=limit)


def test_batches_of_two_take_five_expired_leases_in_three_batches(rt, clock):
    client = add_client(rt)
    ids = _jobs(rt, client, 5)
    assert _reclaim(rt, 2) == []  # nothing expired yet
    clock.advance(300)
    got = [_reclaim(rt, 2) for _ in range(4)]
    assert [len(b) for b in got] == [2, 2, 1, 0]
    assert sorted(j for b in got for j, _ in b) == ids
    assert all(st == JobState.QUEUED for b in got for _, st in b)
    # one broker batch per committed reclaim batch, with exactly its requeued jobs
    assert rt.mirror.batches == [[j for j, _ in b] for b in got if b]
    with rt.db.read_session() as s:
        assert counters.read(s, counters.LEASES_EXPIRED) == 5
        assert s.scalar(select(func.count()).select_from(ContentStrike)) == 5  # one strike per expiry


def test_reclaim_all_continues_after_a_full_batch(rt, clock, monkeypatch):
    """A batch exactly the size of the limit is followed by another (here empty) one."""
    monkeypatch.setattr(maintenance, "RECLAIM_BATCH", 2)
    client = add_client(rt)
    ids = _jobs(rt, client, 4)
    clock.advance(300)
    rt.mirror.published.clear()  # the submits' messages
    done = maintenance.reclaim_all(rt.db, rt.now(), rt.notifier, rt.mirror)
    assert sorted(j for j, _ in done) == ids
    assert sorted(rt.mirror.published) == ids
    with rt.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.state == 0, Job.lease_token.is_(None))) == 4


def test_a_batch_costs_the_same_statements_whatever_its_size(rt, clock):
    client = add_client(rt)

    def statements(n: int) -> int:
        _jobs(rt, client, n)
        clock.advance(300)
        seen: list[str] = []

        def count(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
            seen.append(statement)

        event.listen(rt.db.engine, "before_cursor_execute", count)
        try:
            assert len(_reclaim(rt, 1000)) == n
        finally:
            event.remove(rt.db.engine, "before_cursor_execute", count)
        return len(seen)

    assert statements(2) == statements(7)


def test_every_outcome_in_one_batch(make_runtime, any_db_url, clock):
    """Requeued, failed after the last attempt (callback owed, follower released), cancelled by
    the client (no strike), and one document expiring on two factories in the same batch
    (quarantined: its other QUEUED job fails)."""
    rt = make_runtime(database_url=any_db_url, broker=False, max_attempts=1)
    rt.mirror = RecordingMirror()
    client = add_client(rt)
    url = "http://127.0.0.1:9/failed"
    last, _ = submit_job(rt, client, b"PK last attempt", failure_url=url)
    follower, _ = submit_job(rt, client, b"PK last attempt", failure_url=url)
    with rt.db.session() as s:  # it follows `last` (result cache)
        s.execute(update(Job).where(Job.id == follower).values(follows_job_id=last))
    cancelled, _ = submit_job(rt, client, b"PK cancelled")
    poison_a, _ = submit_job(rt, client, b"PK poison", page_end=1)
    poison_b, _ = submit_job(rt, client, b"PK poison", page_end=2)
    poison_queued, _ = submit_job(rt, client, b"PK poison", page_end=3)
    _claim(rt, "f1", last)
    _claim(rt, "f1", cancelled)
    _claim(rt, "f1", poison_a)
    _claim(rt, "f2", poison_b)
    with rt.db.session() as s:
        assert client_views.cancel_one(s, rt.now(), client, cancelled) == client_views.CANCEL_REQUESTED
    clock.advance(300)
    rt.mirror.published.clear()  # the submits' messages
    assert sorted(_reclaim(rt, 1000)) == sorted(
        [(last, JobState.FAILED), (cancelled, JobState.FAILED), (poison_a, JobState.FAILED), (poison_b, JobState.FAILED)]
    )
    with rt.db.read_session() as s:
        jobs = {j.id: j for j in s.scalars(select(Job)).all()}
        assert jobs[last].failure_reason == "lease expired (attempt 1 of 1)" and jobs[last].finished_at == rt.now()
        assert jobs[cancelled].failure_reason == leases.CANCELLED_BY_CLIENT
        assert (jobs[follower].state, jobs[follower].follows_job_id) == (JobState.QUEUED, None)  # on its own now
        assert jobs[poison_queued].state == JobState.FAILED and jobs[poison_queued].failure_reason.startswith("quarantined: ")
        assert all(j.lease_token is None and j.lease_owner is None for j in jobs.values())
        assert s.scalars(select(Callback.job_id)).all() == [last]
        strikes = sorted(s.execute(select(ContentStrike.factory)).scalars().all())
        assert strikes == ["f1", "f1", "f2"]  # not the cancelled job's
        q = s.scalar(select(Quarantine))
        assert q is not None and q.factories == "f1,f2" and "(on 2 factories)" in q.reason
        assert counters.read(s, counters.QUARANTINED) == 1
    assert rt.mirror.published == [follower]  # released followers are published; nothing was requeued


def test_a_job_finished_while_the_reclaim_runs_stays_complete(rt, clock):
    """The factory's finish holds the job (PostgreSQL: row lock; SQLite: the write lock) when the
    reclaim starts: the reclaim skips it (PostgreSQL) or waits and then finds no expired lease."""
    client = add_client(rt)
    done_job, done_guid = submit_job(rt, client, b"PK finishing")
    other = _jobs(rt, client, 2)
    lease = _claim(rt, "slow-factory", done_job)
    in_time = clock.advance(rt.policy.lease_seconds - 1)  # the finish is in time...
    late = in_time + timedelta(hours=1)
    finishing, reclaimed = threading.Event(), threading.Event()
    result: list[list[tuple[int, JobState]]] = []

    def reclaimer() -> None:
        finishing.wait(10)
        result.append(maintenance.reclaim_all(rt.db, late, rt.notifier, rt.mirror))
        reclaimed.set()

    t = threading.Thread(target=reclaimer)
    t.start()
    with rt.db.session() as s:
        leases.finish(
            s, in_time, rt.notifier, guid=done_guid, owner="slow-factory", token=lease.lease_token, fmt="pdf", parts=b"%PDF", max_bytes=1 << 20
        )
        finishing.set()
        # ...and the reclaim, at a time when the lease has expired, runs before the finish commits
        if rt.db.is_sqlite:
            assert not reclaimed.wait(0.5)  # serial writers: it waits for the finish
        else:
            assert reclaimed.wait(10)  # SKIP LOCKED: it does not wait, and leaves the job alone
    t.join(20)
    assert sorted(j for j, _ in result[0]) == other
    with rt.db.read_session() as s:
        assert s.scalar(select(Job.state).where(Job.id == done_job)) == JobState.COMPLETE
    with rt.db.session() as s:
        assert maintenance.reclaim_expired(s, late, rt.notifier, rt.mirror) == []

