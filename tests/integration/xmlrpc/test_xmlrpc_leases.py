"""Lease rules end to end over XML-RPC, time moved by the injected FakeClock (no sleeps)."""

from __future__ import annotations

import xmlrpc.client

import pytest
from sqlalchemy import func, select

from app.db.models import Job, Result
from app.domain.states import JobState
from app.services import maintenance
from tests.conftest import add_factory, submit_job
from tests.integration.xmlrpc.xrkit import FACTORY, proxy


def snapshot(rt, guid):  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        job = s.scalar(select(Job).where(Job.guid == guid))
        results = s.scalar(select(func.count()).select_from(Result).where(Result.job_id == job.id))
        return (job.state, job.lease_token, job.lease_owner, job.lease_expires, job.attempts, job.failure_reason, results)


def all_refused(fp, name, guid, lease):  # type: ignore[no-untyped-def]
    """finish, extend and fail are each refused with 409."""
    calls = [
        lambda: fp.jobs.finish(name, guid, "pdf", "UEs=", *lease),
        lambda: fp.jobs.extend(name, guid, *lease),
        lambda: fp.jobs.fail(name, guid, "late", *lease),
    ]
    for call in calls:
        with pytest.raises(xmlrpc.client.Fault) as info:
            call()
        assert info.value.faultCode == 409, info.value


@pytest.mark.parametrize("with_token", [True, False])
def test_after_expiry_nothing_changes(live_server, client_id, fp, clock, with_token):
    rt = live_server.runtime
    _, guid = submit_job(rt, client_id)
    job = fp.jobs.poll(FACTORY)
    clock.advance(300)  # exactly at leaseExpires: already expired
    before = snapshot(rt, guid)
    all_refused(fp, FACTORY, guid, [job["lease"]] if with_token else [])
    assert snapshot(rt, guid) == before


def test_after_reclaim_and_a_new_lease_the_old_holder_is_fenced(live_server, client_id, fp, clock):
    rt = live_server.runtime
    add_factory(rt, "second", "second-secret")
    second = proxy(live_server.url, "second", "second-secret")
    job_id, guid = submit_job(rt, client_id)
    old = fp.jobs.poll(FACTORY)
    clock.advance(301)
    with rt.db.session() as s:
        assert maintenance.reclaim_expired(s, rt.now(), rt.notifier, rt.mirror) == [(job_id, JobState.QUEUED)]
    state = snapshot(rt, guid)
    assert state[0] == JobState.QUEUED and state[1] is None and state[4] == 1
    all_refused(fp, FACTORY, guid, [old["lease"]])
    assert snapshot(rt, guid) == state
    # The job is handed out again, with a fresh token; the old holder still cannot touch it.
    new = second.jobs.poll("second")
    assert new["job"] == guid and new["lease"] != old["lease"] and new["attempt"] == 2
    held = snapshot(rt, guid)
    all_refused(fp, FACTORY, guid, [old["lease"]])
    all_refused(fp, FACTORY, guid, [])
    assert snapshot(rt, guid) == held
    assert second.jobs.finish("second", guid, "pdf", "UEs=", new["lease"])


def test_another_factory_or_a_wrong_token_is_refused(live_server, client_id, fp):
    rt = live_server.runtime
    add_factory(rt, "thief", "thief-secret")
    thief = proxy(live_server.url, "thief", "thief-secret")
    _, guid = submit_job(rt, client_id)
    job = fp.jobs.poll(FACTORY)
    before = snapshot(rt, guid)
    all_refused(thief, "thief", guid, [job["lease"]])  # even with the right token
    all_refused(fp, FACTORY, guid, ["f" * 32])
    assert snapshot(rt, guid) == before
    assert fp.jobs.extend(FACTORY, guid, job["lease"])["cancelled"] is False


def test_extend_moves_to_processing_and_is_capped(live_server, client_id, fp, clock):
    rt = live_server.runtime  # lease 300 s, at most 3600 s per attempt
    _, guid = submit_job(rt, client_id)
    job = fp.jobs.poll(FACTORY)
    assert snapshot(rt, guid)[0] == JobState.REQUESTED_FOR_PROCESSING
    expiries = []
    cancelled = False
    for _ in range(20):
        clock.advance(200)
        ext = fp.jobs.extend(FACTORY, guid, job["lease"])
        assert snapshot(rt, guid)[0] == JobState.PROCESSING
        expiries.append(str(ext["leaseExpires"]))
        if ext["cancelled"]:
            cancelled = True
            break
    assert expiries[0] == "20260101T12:08:20"  # now (12:03:20) + 300 s
    assert cancelled and expiries[-1] == "20260101T13:00:00"  # leased at 12:00 + 3600 s
    clock.advance(3600 - 200 * len(expiries))  # to the cap: the lease is over
    with pytest.raises(xmlrpc.client.Fault) as info:
        fp.jobs.extend(FACTORY, guid, job["lease"])
    assert info.value.faultCode == 409


def test_fail_uses_attempts_and_expiry_counts_too(live_server, client_id, fp, clock):
    rt = live_server.runtime
    _, guid = submit_job(rt, client_id)
    job = fp.jobs.poll(FACTORY)
    assert fp.jobs.fail(FACTORY, guid, "  bad\n document ", job["lease"]) == {"jobStatus": 0}
    assert snapshot(rt, guid)[5] == "bad document"
    fp.jobs.poll(FACTORY)
    clock.advance(301)
    with rt.db.session() as s:
        maintenance.reclaim_expired(s, rt.now(), rt.notifier, rt.mirror)
    job = fp.jobs.poll(FACTORY)
    assert job["attempt"] == 3
    assert fp.jobs.fail(FACTORY, guid, "still bad", job["lease"]) == {"jobStatus": int(JobState.FAILED)}
    state = snapshot(rt, guid)
    assert state[0] == JobState.FAILED and state[5] == "still bad" and state[4] == 3
    assert fp.jobs.poll(FACTORY) == {}
