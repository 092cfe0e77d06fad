"""Load-shaped behaviour: no writes on an empty poll, 32 factories in parallel on PostgreSQL,
and a 100 MiB document through submit -> poll -> finish intact."""

from __future__ import annotations

import hashlib
import os
import threading
import xmlrpc.client
from collections import Counter

from sqlalchemy import event, select

from app.db.blobs import iter_blob
from app.db.models import Job, Result
from app.domain.states import JobState
from tests.conftest import add_client, add_factory, start_server, submit_job
from tests.integration.xmlrpc.xrkit import FACTORY, proxy

WRITES = ("INSERT", "UPDATE", "DELETE")


def test_empty_poll_does_no_database_write(live_server, factory, fp):
    rt = live_server.runtime
    assert fp.jobs.poll(FACTORY) == {}  # first poll: authenticates and records last_poll_at
    statements: list[str] = []
    listener = lambda conn, cur, stmt, *a: statements.append(stmt)  # noqa: E731
    event.listen(rt.db.engine, "before_cursor_execute", listener)
    try:
        for _ in range(3):
            assert fp.jobs.poll(FACTORY) == {}
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", listener)
    assert statements, "the probe reads"
    assert not [s for s in statements if s.lstrip().upper().startswith(WRITES)], statements


def test_32_factories_in_parallel_on_postgresql_each_job_once(make_runtime, pg_url, monkeypatch):
    from app.domain import credentials
    from app.services import admin

    # 32 registrations + 32 first logins at the production scrypt cost would dominate the test;
    # the cost parameter travels in the stored hash, so verification is cheap too.
    monkeypatch.setattr(admin, "hash_secret", lambda secret: credentials.hash_secret(secret, n=2**4))
    rt = make_runtime(database_url=pg_url, broker=False)
    srv = start_server(rt)
    try:
        cid = add_client(rt)
        names = [f"factory-{i:02d}" for i in range(32)]
        for n in names:
            add_factory(rt, n, f"secret-{n}")
        n_jobs = 300
        submitted = {submit_job(rt, cid, f"doc {i}".encode())[1] for i in range(n_jobs)}
        got: dict[str, list[str]] = {n: [] for n in names}
        errors: list[BaseException] = []
        start = threading.Barrier(len(names))

        def run(name: str) -> None:
            p = proxy(srv.url, name, f"secret-{name}")
            try:
                start.wait()
                while True:
                    job = p.jobs.poll(name)
                    if not job:
                        return
                    got[name].append(job["job"])
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in names]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        handed = Counter(g for lst in got.values() for g in lst)
        assert set(handed) == submitted and set(handed.values()) == {1}
        assert sum(1 for lst in got.values() if lst) > 1  # the work was actually shared
        with rt.db.read_session() as s:
            states = Counter(s.scalars(select(Job.state)).all())
        assert states == {int(JobState.REQUESTED_FOR_PROCESSING): n_jobs}
    finally:
        srv.stop()


BIG_MIB = int(os.environ.get("CONVHUB_TEST_BIG_MIB", "100"))


def test_large_document_round_trip(live_server, client_id, factory):
    rt = live_server.runtime
    block = hashlib.sha256(b"seed").digest() * 32768  # 1 MiB, not compressible by accident
    data = b"".join(bytes([i % 251]) + block[1:] for i in range(BIG_MIB))  # 100 MiB: not a multiple of 3
    _, guid = submit_job(rt, client_id, data, fmt="odf")
    fp = proxy(live_server.url, use_builtin_types=True)
    job = fp.jobs.poll(FACTORY)
    got = xmlrpc.client.base64.b64decode(job["document"])
    assert len(got) == len(data) and got == data
    del job["document"]
    result = bytes(reversed(got[: 1 << 20])) + got[1 << 20 :]  # a "converted" document of the same size
    del got
    result_guid = fp.jobs.finish(FACTORY, guid, "odf", xmlrpc.client.Binary(result), job["lease"])
    digest = hashlib.sha256()
    size = 0
    with rt.db.read_session() as s:
        res = s.scalar(select(Result).where(Result.guid == result_guid))
        for chunk in iter_blob(s, res.blob_id):
            digest.update(chunk)
            size += len(chunk)
    assert size == len(result) and digest.digest() == hashlib.sha256(result).digest()
