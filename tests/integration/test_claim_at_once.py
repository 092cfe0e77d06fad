"""The poll's claim (`poll.claim_next`): on PostgreSQL one statement (`claims.claim_at_once`), with
the transactional `claims.claim` behind it for clients with an in-flight limit. The farm policy's
rules hold through it exactly as through `claims.claim` (tests/integration/test_fair_share.py)."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import select, text, update

from app.db.models import Job
from app.domain.matching import WorkerSpec
from app.domain.states import JobState
from app.services import admin, claims, leases
from app.services import statements as sql
from app.services.auth import FactoryIdentity
from app.services.poll import claim_next
from tests.conftest import WRITER, add_client
from tests.integration.test_fair_share import _client_of, _flood

SPEC = WorkerSpec.parse(WRITER)
FACTORY = FactoryIdentity(1, "f", (SPEC,), False)


def _next(rt):  # type: ignore[no-untyped-def]
    return claim_next(rt.db, rt.now(), rt.policy, FACTORY)


def test_priority_and_share_through_the_poll_claim(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    a, b = add_client(rt, "a"), add_client(rt, "b")
    low = _flood(rt, a, 10, priority=1)
    _flood(rt, b, 10)
    urgent = _flood(rt, a, 3, priority=9)
    order = [_next(rt).id for _ in range(10)]
    a_order = [j for j in order if j in set(low + urgent)]
    assert a_order[:3] == urgent
    owners = [_client_of(rt, j) for j in order]
    assert owners.count(a) == 5 and owners.count(b) == 5, owners
    assert all(owners[i] != owners[i + 1] for i in range(len(owners) - 1)), owners
    rest = [_next(rt).id for _ in range(13)]
    assert [j for j in rest if j in set(low)] == [j for j in low if j not in set(order)]
    assert _next(rt) is None


def test_claimed_answer_carries_the_lease_and_the_one_chunk_document(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    [job_id] = _flood(rt, add_client(rt), 1)
    got = _next(rt)
    assert got is not None and got.id == job_id and got.document == b"PK x" and got.size == 4 and got.attempt == 1
    assert got.filename == "d.odt" and got.doctype == "odt" and got.format == "pdf"
    with rt.db.read_session() as s:
        row = s.execute(select(Job.state, Job.lease_token, Job.lease_owner, Job.lease_expires, Job.attempts).where(Job.id == job_id)).one()
    assert row.state == int(JobState.REQUESTED_FOR_PROCESSING) and row.lease_token == got.lease_token and row.lease_owner == "f"
    assert row.attempts == 1 and _aware(row.lease_expires) == _aware(got.lease_expires)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo is not None else t.replace(tzinfo=datetime.now().astimezone().tzinfo)


def test_in_flight_limit_holds_through_the_poll_claim(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    with rt.db.session() as s:
        a = admin.add_client(s, rt.now(), "capped", "x", max_in_flight=2).id
    b = add_client(rt, "free")
    _flood(rt, a, 5)
    b_jobs = _flood(rt, b, 3)
    handed = [_next(rt) for _ in range(5)]
    owners = [_client_of(rt, c.id) for c in handed if c is not None]
    assert owners.count(a) == 2 and owners.count(b) == 3
    assert _next(rt) is None
    done = next(c for c in handed if c is not None and _client_of(rt, c.id) == a)
    with rt.db.session() as s:
        leases.finish(s, rt.now(), rt.notifier, guid=done.guid, owner="f", token=done.lease_token, fmt="pdf", parts=b"%PDF", max_bytes=1 << 20)
    again = _next(rt)
    assert again is not None and _client_of(rt, again.id) == a
    assert _next(rt) is None
    assert set(b_jobs) <= {c.id for c in handed if c is not None}


def test_followers_are_never_claimed_through_the_poll_claim(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    leader, follower = _flood(rt, add_client(rt), 2)
    with rt.db.session() as s:
        s.execute(update(Job).where(Job.id == follower).values(follows_job_id=leader))
    assert _next(rt).id == leader
    assert _next(rt) is None


def test_one_statement_claim_uses_the_indexes_on_postgres(make_runtime, pg_url):
    rt = make_runtime(database_url=pg_url, broker=False)
    _flood(rt, add_client(rt, "big"), 20_000)
    for n in range(30):
        _flood(rt, add_client(rt, f"c{n}"), 50)
    with rt.db.session() as s:
        s.execute(text("ANALYZE jobs"))
        s.execute(text("ANALYZE client_applications"))
    with rt.db.session() as s:  # EXPLAIN only: rolled back below, nothing claimed
        stmt = sql.claim_statement(SPEC.pair, (SPEC,))
        params = {"c_state": 1, "c_token": "t", "c_owner": "f", "c_now": rt.now(), "c_expires": rt.now()}
        compiled = stmt.params(**params).compile(dialect=s.get_bind().dialect, compile_kwargs={"literal_binds": True})
        plan = "\n".join(r[0] for r in s.execute(text(f"EXPLAIN {compiled}")))
        s.rollback()
    assert "ix_jobs_queued_vtag" in plan and "ix_jobs_queued_client_priority" in plan, plan
    assert "Sort" not in plan and "Seq Scan on jobs" not in plan, plan


def test_claim_at_once_is_the_postgresql_path(make_runtime, pg_url):
    rt = make_runtime(database_url=pg_url, broker=False)
    _flood(rt, add_client(rt), 1)
    with rt.db.read_session() as s:
        heads = claims.probe(s, [SPEC])
    got = rt.db.run(
        lambda s: claims.claim_at_once(s, rt.now(), rt.policy, owner="f", workers=[SPEC], pairs=[p for _, p in heads]), autocommit=True
    )
    assert isinstance(got, claims.Claimed) and got.document == b"PK x"
    assert rt.db.run(lambda s: claims.claim_at_once(s, rt.now(), rt.policy, owner="f", workers=[SPEC], pairs=[SPEC.pair]), autocommit=True) is None


def test_finish_of_a_requeued_completed_job_replaces_its_result(make_runtime, any_db_url):
    from app.db.models import Blob, Result
    from app.services import maintenance

    rt = make_runtime(database_url=any_db_url, broker=False)
    [job_id] = _flood(rt, add_client(rt), 1)

    def finish(data: bytes) -> str:
        got = _next(rt)
        assert got is not None and got.id == job_id
        with rt.db.session() as s:
            return leases.finish(
                s, rt.now(), rt.notifier, guid=got.guid, owner="f", token=got.lease_token, fmt="pdf", parts=data, max_bytes=1 << 20
            ).result_guid

    first = finish(b"%PDF first")
    with rt.db.session() as s:
        maintenance.requeue(s, rt.now(), rt.mirror, job_id)
    second = finish(b"%PDF second")
    with rt.db.read_session() as s:
        results = s.execute(select(Result.guid, Blob.size, Blob.sha256).join(Blob, Blob.id == Result.blob_id).where(Result.job_id == job_id)).all()
        sizes = set(s.scalars(select(Blob.size)).all())
    assert first != second and [r.guid for r in results] == [second]
    assert results[0].size == len(b"%PDF second") and results[0].sha256 == hashlib.sha256(b"%PDF second").hexdigest()
    assert len(b"%PDF first") not in sizes  # the first result's blob went with it
