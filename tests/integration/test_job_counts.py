"""Job counts per (client, state) kept by triggers on jobs (migration 0008), on SQLite and
PostgreSQL: `client_views.counts` equals a GROUP BY over the jobs after random transitions,
deletes, purges, retention and a client's removal, whether beat has folded the deltas or not."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from sqlalchemy import event, func, select, update

from app.db.models import Job, JobCountDelta
from app.domain.matching import WorkerSpec
from app.domain.states import DELETED
from app.services import admin, claims, client_views, leases, maintenance
from tests.conftest import WRITER, add_client, submit_job

WRITER_SPEC = (WorkerSpec.parse(WRITER),)


def _group_by(rt: Any, client: int) -> list[tuple[int, int]]:
    with rt.db.read_session() as s:
        rows = s.execute(
            select(Job.state, func.count()).where(Job.client_id == client, Job.state != DELETED).group_by(Job.state).order_by(Job.state)
        ).all()
    return [(int(a), int(b)) for a, b in rows]


def _counts(rt: Any, client: int) -> list[tuple[int, int]]:
    with rt.db.read_session() as s:
        return client_views.counts(s, client)


def _fold(rt: Any) -> None:
    with rt.db.session() as s:
        maintenance.fold_job_counts(s)


def test_counts_equal_a_group_by_after_random_work(make_runtime, any_db_url, clock):
    rt = make_runtime(database_url=any_db_url, broker=False, max_attempts=2)
    rnd = random.Random(14)
    clients = [add_client(rt, f"c{i}", f"secret-{i}") for i in range(3)]
    leased: list[tuple[int, str, str]] = []  # (job id, guid, token)
    n = 0

    def check() -> None:
        for c in clients:
            assert _counts(rt, c) == _group_by(rt, c)

    for step in range(120):
        op = rnd.choice(["submit", "submit", "claim", "claim", "finish", "fail", "delete", "range", "reclaim", "purge", "fold", "retention"])
        with rt.db.session() as s:
            if op == "claim":
                c = claims.claim(s, rt.now(), rt.policy, owner="f", workers=WRITER_SPEC)
                if c is not None:
                    leased.append((c.id, c.guid, c.lease_token))
            elif op in ("finish", "fail") and leased:
                job_id, guid, token = leased.pop(rnd.randrange(len(leased)))
                try:
                    if op == "finish":
                        leases.finish(s, rt.now(), rt.notifier, guid=guid, owner="f", token=token, fmt="pdf", parts=b"%PDF", max_bytes=1 << 20)
                    else:
                        leases.fail(s, rt.now(), rt.policy, rt.notifier, rt.mirror, guid=guid, owner="f", token=token, reason="x",
                                    permanent=rnd.random() < 0.3)
                except Exception:  # the lease expired meanwhile (reclaimed): nothing changed
                    s.rollback()
            elif op == "delete":
                c = rnd.choice(clients)
                ids = [i for i, st in client_views.list_jobs(s, c) if st in (0, 3, 4)]
                if ids:
                    client_views.delete_one(s, rt.now(), c, rnd.choice(ids))
            elif op == "range":
                client_views.delete_range(s, rt.now(), rnd.choice(clients), rt.now() - rnd.choice([10, 60, 600]) * timedelta(seconds=1), rt.now())
            elif op == "reclaim":
                clock.advance(rnd.choice([1, 400]))
                maintenance.reclaim_expired(s, rt.now(), rt.notifier, rt.mirror)
            elif op == "purge":
                maintenance.purge_deleted(s, rt.now())
            elif op == "fold":
                maintenance.fold_job_counts(s)
            elif op == "retention":
                maintenance.retention_purge(s, rt.now(), 1)
        if op == "submit":
            for _ in range(rnd.randint(1, 4)):
                n += 1
                submit_job(rt, rnd.choice(clients), f"PK doc {n}".encode())
        clock.advance(rnd.choice([1, 5, 30]))
        if step % 10 == 0:
            clock.advance(rnd.choice([0, 90000]))  # retention (1 day) sometimes applies
        check()
    _fold(rt)
    check()
    assert sum(n for c in clients for _, n in _counts(rt, c)) > 0


def test_a_multi_row_update_and_a_client_removal(make_runtime, any_db_url):
    """Statements that move many rows at once, and the cascade of a removed client."""
    rt = make_runtime(database_url=any_db_url, broker=False)
    a, b = add_client(rt, "a", "secret-a"), add_client(rt, "b", "secret-b")
    for i in range(5):
        submit_job(rt, a, f"PK a{i}".encode())
    with rt.db.session() as s:
        s.execute(update(Job).where(Job.id <= 3).values(client_id=b, state=4))
    assert _counts(rt, a) == [(0, 2)] and _counts(rt, b) == [(4, 3)]
    _fold(rt)
    assert _counts(rt, a) == [(0, 2)] and _counts(rt, b) == [(4, 3)]
    with rt.db.session() as s:
        admin.remove_client(s, "b")
    assert _counts(rt, b) == [] and _counts(rt, a) == [(0, 2)]


def test_counts_read_is_one_statement_and_state_changes_add_no_statement(make_runtime, pg_url):
    """PostgreSQL: a read is one SELECT; a claim adds no statement of its own (the trigger writes
    in the claim's statement), and an UPDATE that changes no state appends no delta."""
    rt = make_runtime(database_url=pg_url, broker=False)
    client = add_client(rt)
    submit_job(rt, client)
    seen: list[str] = []

    def count(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(rt.db.engine, "before_cursor_execute", count)
    try:
        assert _counts(rt, client) == [(0, 1)]
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", count)
    assert len([s for s in seen if s.lstrip().upper().startswith("SELECT")]) == 1
    _fold(rt)
    with rt.db.session() as s:
        s.execute(update(Job).values(vtag=Job.vtag + 1))
    with rt.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(JobCountDelta)) == 0



