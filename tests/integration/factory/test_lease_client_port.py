"""One conformance test of the factory core's lease-client port (app/factory/lease.py), run against
both adapters over the real server: XmlRpcLeaseClient (the pull factory, over a loopback HTTP
server) and ServicesLeaseClient (the push factory, in-process services). SQLite, FakeClock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from app.domain.matching import WorkerSpec
from app.domain.states import JobState
from app.factory.lease import Extension, LeaseClient, LeaseLost, ResultRefused, ResultTooLarge
from app.factory.xmlrpc_client import make_proxy, parse_lease_expires
from app.factory.xmlrpc_lease import XmlRpcLeaseClient
from tasks.factory_worker import ServicesLeaseClient
from tests.conftest import WRITER, add_client, add_factory, start_server, submit_job

NAME, SECRET = "port-factory", "port-secret-1"
MAX_BYTES = 4096


@dataclass
class Held:
    job_id: int
    guid: str
    lease: str | None
    expires: float | None


@dataclass
class Adapter:
    client: LeaseClient
    take: Callable[[int], Held]  # lease the given (only queued) job to this factory


@pytest.fixture(params=["xmlrpc", "services"])
def adapter(request, make_runtime):  # type: ignore[no-untyped-def]
    rt = make_runtime(max_document_bytes=MAX_BYTES)
    add_factory(rt, NAME, SECRET, (WRITER,))
    if request.param == "xmlrpc":
        server = start_server(rt)
        request.addfinalizer(server.stop)
        proxy = make_proxy(server.url, NAME, SECRET, timeout=30)

        def take(job_id: int) -> Held:
            job = proxy.jobs.poll(NAME)
            return Held(job_id, job["job"], job.get("lease") or None, parse_lease_expires(job.get("leaseExpires")))

        return rt, Adapter(XmlRpcLeaseClient(proxy, NAME, sleep=lambda s: None), take)

    services = ServicesLeaseClient(rt, NAME, sleep=lambda s: None)

    def claim(job_id: int) -> Held:
        c = services.claim(job_id, (WorkerSpec.parse(WRITER),))
        assert c is not None
        return Held(job_id, c.guid, c.lease_token, c.lease_expires.timestamp())

    return rt, Adapter(services, claim)


def state(rt, job_id: int) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    from app.db.models import Job

    with rt.db.read_session() as s:
        job = s.get(Job, job_id)
        return job.state, job.attempts


def test_extend_finish_and_the_errors_of_a_lost_lease(adapter):  # type: ignore[no-untyped-def]
    rt, a = adapter
    client_id = add_client(rt)
    job_id, _ = submit_job(rt, client_id)
    held = a.take(job_id)
    assert state(rt, job_id) == (JobState.REQUESTED_FOR_PROCESSING, 1)

    ext = a.client.extend(held.guid, held.lease)
    assert isinstance(ext, Extension) and ext.cancelled is False
    assert ext.lease_expires is not None and ext.lease_expires > rt.now().timestamp()
    assert state(rt, job_id) == (JobState.PROCESSING, 1)

    with pytest.raises(LeaseLost):
        a.client.extend(held.guid, "not-the-lease")
    with pytest.raises(ResultTooLarge):
        a.client.finish(held.guid, held.lease, "pdf", b"x" * (MAX_BYTES + 1), until=None)
    with pytest.raises(ResultRefused):
        a.client.finish(held.guid, held.lease, "docx", b"%PDF", until=None)

    result = a.client.finish(held.guid, held.lease, "pdf", b"%PDF-1.4 port", until=None)
    assert isinstance(result, str) and result
    assert state(rt, job_id) == (JobState.COMPLETE, 1)
    with pytest.raises(LeaseLost):
        a.client.extend(held.guid, held.lease)
    with pytest.raises(LeaseLost):
        a.client.finish(held.guid, held.lease, "pdf", b"%PDF-1.4 again", until=None)
    with pytest.raises(LeaseLost):
        a.client.fail(held.guid, held.lease, reason="too late")


def test_fail_gives_the_attempt_back_until_none_is_left(adapter):  # type: ignore[no-untyped-def]
    rt, a = adapter
    client_id = add_client(rt)
    job_id, _ = submit_job(rt, client_id)
    seen = []
    for _ in range(rt.settings.max_attempts):
        held = a.take(job_id)
        seen.append(a.client.fail(held.guid, held.lease, reason="bad document"))
    assert seen == [JobState.QUEUED] * (rt.settings.max_attempts - 1) + [JobState.FAILED]
    assert state(rt, job_id) == (JobState.FAILED, rt.settings.max_attempts)
