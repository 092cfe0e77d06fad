"""A range delete releases the followers (result cache) of the jobs it deletes, and only those."""

from __future__ import annotations

from sqlalchemy import select, update

from app.db.models import Job
from app.domain.states import DELETED, JobState
from app.services import client_views
from tests.conftest import add_client, submit_job


def test_range_delete_releases_only_the_followers_of_deleted_jobs(make_runtime, any_db_url, clock):
    rt = make_runtime(database_url=any_db_url, broker=False)
    client = add_client(rt)
    start = rt.now()
    leader, _ = submit_job(rt, client, b"PK leader in range")
    clock.advance(60)
    end = rt.now()
    kept_leader, _ = submit_job(rt, client, b"PK leader after the range")
    released, _ = submit_job(rt, client, b"PK leader in range")
    still, _ = submit_job(rt, client, b"PK leader after the range")
    with rt.db.session() as s:  # followers (result cache) of a job inside and of one outside the range
        s.execute(update(Job).where(Job.id == released).values(follows_job_id=leader))
        s.execute(update(Job).where(Job.id == still).values(follows_job_id=kept_leader))
    with rt.db.session() as s:
        got = client_views.delete_range(s, rt.now(), client, start, end)
    assert (got.deleted, got.skipped) == (1, 0)
    with rt.db.read_session() as s:
        rows = {i: (st, f) for i, st, f in s.execute(select(Job.id, Job.state, Job.follows_job_id).where(Job.state != DELETED)).all()}
    assert leader not in rows  # removed (PostgreSQL) or marked DELETED (SQLite) at once
    assert rows[released] == (JobState.QUEUED, None)
    assert rows[still] == (JobState.QUEUED, kept_leader)
