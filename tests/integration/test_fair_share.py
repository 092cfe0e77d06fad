"""Farm policy, points 1-3 (SPEC "Farm policy"): weighted fair share between clients, priority
within a client, queue and in-flight quotas. Over real PostgreSQL and SQLite (`any_db_url`)."""

from __future__ import annotations

from collections import Counter

import pytest
from sqlalchemy import event, func, select, text

from app.db.models import Base, ClientApplication, Job
from app.domain.errors import BadArgument, ClientQueueFull
from app.domain.matching import WorkerSpec
from app.domain.states import JobState
from app.services import admin, claims, leases, submission
from app.services import statements as sql
from app.services.auth import FactoryIdentity
from app.services.poll import poll
from tests.conftest import WRITER, add_client, add_factory

SPEC = WorkerSpec.parse(WRITER)


def _flood(rt, client_id: int, n: int, *, priority: int | None = None) -> list[int]:  # type: ignore[no-untyped-def]
    """n QUEUED jobs of one client through `submission.enqueue_batch` (the tags come from the
    service; one multi-row INSERT, so 10,000 take seconds)."""
    with rt.db.session() as s:
        content = submission.upload(s, rt.now(), client_id=client_id, filename="d.odt", parts=b"PK x", max_bytes=1 << 20)
        return submission.enqueue_batch(
            s, rt.now(), rt.mirror, client_id=client_id, content=content, application=SPEC.application,
            version=SPEC.version, count=n, fmt="pdf", priority=priority,
        )


def _one_by_one(rt, client_id: int, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    """n jobs through `submission.enqueue`, one at a time (the path contentConvert takes)."""
    ids = []
    for _ in range(n):
        with rt.db.session() as s:
            content = submission.upload(s, rt.now(), client_id=client_id, filename="d.odt", parts=b"PK x", max_bytes=1 << 20)
            ids.append(
                submission.enqueue(
                    s, rt.now(), rt.mirror, client_id=client_id, content=content, application=SPEC.application,
                    version=SPEC.version, fmt="pdf",
                ).id
            )
    return ids


def _claim(rt, owner: str = "f"):  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        return claims.claim(s, rt.now(), rt.policy, owner=owner, workers=[SPEC])


def _finish(s, rt, c) -> None:  # type: ignore[no-untyped-def]
    leases.finish(s, rt.now(), rt.notifier, guid=c.guid, owner="f", token=c.lease_token, fmt="pdf", parts=b"%PDF", max_bytes=1 << 20)


def _client_of(rt, job_id: int) -> int:  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        return s.scalar(select(Job.client_id).where(Job.id == job_id))


def _factory(rt) -> FactoryIdentity:  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        return rt.auth.factory(s, "factory-1", "factory-secret-1", rt.now())


def test_flooding_client_does_not_starve_a_small_one(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    add_factory(rt)
    a, b = add_client(rt, "flood"), add_client(rt, "small")
    _flood(rt, a, 10_000)
    small = set(_one_by_one(rt, b, 10))
    f = _factory(rt)
    handed = [poll(rt.db, rt.now(), rt.policy, rt.mirror, f) for _ in range(20)]
    assert all(c is not None for c in handed)
    assert small <= {c.id for c in handed if c is not None}


def test_weights_three_to_one_give_three_to_one_shares(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    with rt.db.session() as s:
        a = admin.add_client(s, rt.now(), "heavy", "x", weight=3).id
        b = admin.add_client(s, rt.now(), "light", "y", weight=1).id
    _flood(rt, a, 500)
    _flood(rt, b, 500)
    got = Counter(_client_of(rt, c.id) for c in (_claim(rt) for _ in range(400)) if c is not None)
    assert sum(got.values()) == 400
    ratio = got[a] / got[b]
    assert abs(ratio - 3.0) <= 0.3, got


def test_single_client_is_served_oldest_first(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    a = add_client(rt)
    ids = _one_by_one(rt, a, 10) + _flood(rt, a, 10) + _one_by_one(rt, a, 10)
    assert [_claim(rt).id for _ in ids] == ids
    assert _claim(rt) is None


def test_priority_orders_a_clients_own_jobs_but_never_its_share(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    a, b = add_client(rt, "a"), add_client(rt, "b")
    low = _flood(rt, a, 10, priority=1)
    _flood(rt, b, 10)
    urgent = _flood(rt, a, 3, priority=9)
    order = [_claim(rt).id for _ in range(10)]
    # a's urgent jobs come first among a's jobs, in submission order...
    a_order = [j for j in order if j in set(low + urgent)]
    assert a_order[:3] == urgent
    # ...and a still gets no more than its share: the two clients alternate.
    owners = [_client_of(rt, j) for j in order]
    assert owners.count(a) == 5 and owners.count(b) == 5, owners
    assert all(owners[i] != owners[i + 1] for i in range(len(owners) - 1)), owners
    # The low-priority ones follow in their own order.
    rest = [_claim(rt).id for _ in range(13)]
    assert [j for j in rest if j in set(low)] == [j for j in low if j not in set(order)]


def test_requeued_job_keeps_its_place(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    a = add_client(rt)
    ids = _flood(rt, a, 3)
    first = _claim(rt)
    with rt.db.session() as s:
        leases.fail(s, rt.now(), rt.policy, rt.notifier, rt.mirror, guid=first.guid, owner="f", token=first.lease_token, reason="transient")
    assert _claim(rt).id == ids[0]


def test_in_flight_limit_holds(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    with rt.db.session() as s:
        a = admin.add_client(s, rt.now(), "capped", "x", max_in_flight=2).id
    b = add_client(rt, "free")
    _flood(rt, a, 5)
    b_jobs = _flood(rt, b, 3)
    handed = [_claim(rt) for _ in range(5)]
    owners = [_client_of(rt, c.id) for c in handed if c is not None]
    assert owners.count(a) == 2 and owners.count(b) == 3
    assert _claim(rt) is None  # only the capped client has queued jobs left
    with rt.db.read_session() as s:
        assert claims.probe(s, [SPEC]) == []  # the probe does not offer a blocked client's job
    done = next(c for c in handed if c is not None and _client_of(rt, c.id) == a)
    with rt.db.session() as s:
        _finish(s, rt, done)
    again = _claim(rt)
    assert again is not None and _client_of(rt, again.id) == a
    assert _claim(rt) is None
    assert set(b_jobs) <= {c.id for c in handed if c is not None}


def _counts(rt) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        return {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def test_queue_quota_refusal_stores_nothing(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    add_factory(rt)
    with rt.db.session() as s:
        a = admin.add_client(s, rt.now(), "quota", "x", max_queued=3).id
        content = submission.upload(s, rt.now(), client_id=a, filename="d.odt", parts=b"PK x", max_bytes=1 << 20)
        cid = content.identifier
    for _ in range(3):
        with rt.db.session() as s:
            submission.convert(s, rt.now(), rt.mirror, client_id=a, identifier=cid, application=SPEC.application, version=SPEC.version)
    before = _counts(rt)
    with rt.db.read_session() as s:
        vtime = s.scalar(select(ClientApplication.vtime).where(ClientApplication.id == a))
    with pytest.raises(ClientQueueFull) as refused, rt.db.session() as s:
        submission.convert(s, rt.now(), rt.mirror, client_id=a, identifier=cid, application=SPEC.application, version=SPEC.version)
    assert refused.value.fields["retryAfterSeconds"] == submission.DEFAULT_RETRY_AFTER
    assert _counts(rt) == before
    with rt.db.read_session() as s:
        assert s.scalar(select(ClientApplication.vtime).where(ClientApplication.id == a)) == vtime


def test_retry_after_comes_from_recent_completions(make_runtime, any_db_url, clock):
    rt = make_runtime(database_url=any_db_url, broker=False)
    a = add_client(rt)
    _flood(rt, a, 4)
    for _ in range(2):  # two completions in the rate window: 2 per 300 s
        c = _claim(rt)
        with rt.db.session() as s:
            _finish(s, rt, c)
    with pytest.raises(ClientQueueFull) as refused, rt.db.session() as s:
        submission.check_quota(s, rt.now(), a, 1)
    # 2 queued, limit 1: one job must end first; at 2 completions per 300 s that is 150 s.
    assert refused.value.fields["retryAfterSeconds"] == 150
    clock.advance(submission.RATE_WINDOW.total_seconds() + 1)
    with pytest.raises(ClientQueueFull) as refused, rt.db.session() as s:
        submission.check_quota(s, rt.now(), a, 1)
    assert refused.value.fields["retryAfterSeconds"] == submission.DEFAULT_RETRY_AFTER


def test_weight_change_takes_effect_at_once(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    a, b = add_client(rt, "a"), add_client(rt, "b")
    _flood(rt, a, 200)
    _flood(rt, b, 200)
    with rt.db.session() as s:
        admin.set_client(s, "a", weight=4)
    got = Counter(_client_of(rt, _claim(rt).id) for _ in range(100))
    assert abs(got[a] / got[b] - 4.0) <= 0.4, got
    with rt.db.session() as s:
        admin.set_client(s, "a", max_in_flight=1, max_queued=7)
        assert s.get(ClientApplication, a).max_in_flight == 1
        admin.set_client(s, "a", max_in_flight=admin.UNSET)
        assert s.get(ClientApplication, a).max_in_flight is None
        assert s.get(ClientApplication, a).max_queued == 7
        with pytest.raises(BadArgument):
            admin.set_client(s, "a", weight=0)


def test_priority_out_of_range_is_refused(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    a = add_client(rt)
    with pytest.raises(BadArgument):
        _flood(rt, a, 1, priority=10)


def test_empty_poll_is_one_read_without_writes(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    add_factory(rt)
    with rt.db.session() as s:
        admin.add_client(s, rt.now(), "capped", "x", max_in_flight=1)
    f = _factory(rt)
    poll(rt.db, rt.now(), rt.policy, rt.mirror, f)  # the factory's first touch is a write, once a minute
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    event.listen(rt.db.engine, "before_cursor_execute", record)
    try:
        assert poll(rt.db, rt.now(), rt.policy, rt.mirror, f) is None
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", record)
    assert [st for st in statements if st in ("INSERT", "UPDATE", "DELETE")] == []
    assert statements.count("SELECT") + statements.count("(SELECT") == 1, statements


def test_probe_and_pick_use_the_indexes_on_postgres(make_runtime, pg_url):
    rt = make_runtime(database_url=pg_url, broker=False)
    # One big client (a NOT EXISTS for the in-flight check made PostgreSQL sort this whole backlog)
    # and many small ones.
    _flood(rt, add_client(rt, "big"), 20_000)
    for n in range(30):
        _flood(rt, add_client(rt, f"c{n}"), 50)
    with rt.db.session() as s:
        s.execute(text("ANALYZE jobs"))
        s.execute(text("ANALYZE client_applications"))
    two = (SPEC, WorkerSpec.parse("LibreOffice Calc|7.4|ods|pdf"))
    with rt.db.read_session() as s:
        for stmt in (sql.probe_query(two)[1], sql.pick_query(SPEC.pair, (SPEC,), True)):
            compiled = stmt.compile(dialect=s.get_bind().dialect, compile_kwargs={"literal_binds": True})
            plan = "\n".join(r[0] for r in s.execute(text(f"EXPLAIN {compiled}")))
            assert "ix_jobs_queued_vtag" in plan, plan
            assert "Sort" not in plan and "Seq Scan on jobs" not in plan, plan
            if stmt is not sql.probe_query(two)[1]:
                assert "ix_jobs_queued_client_priority" in plan, plan


def test_queued_rows_are_in_state_zero_only(make_runtime, any_db_url):
    """The tag index holds the backlog only: a claimed job leaves it, a requeue brings it back."""
    rt = make_runtime(database_url=any_db_url, broker=False)
    a = add_client(rt)
    _flood(rt, a, 2)
    c = _claim(rt)
    with rt.db.read_session() as s:
        assert s.scalar(select(Job.state).where(Job.id == c.id)) == int(JobState.REQUESTED_FOR_PROCESSING)
        assert s.scalar(select(func.count()).select_from(Job).where(sql.IS_QUEUED)) == 1
