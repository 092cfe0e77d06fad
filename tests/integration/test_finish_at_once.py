"""jobs.finish's fast path (one statement on PostgreSQL) against its general path, on SQLite and
PostgreSQL: the same rows written, the same refusals in the same order, and every case the fast
path leaves alone (several chunks, a success callback, followers, an earlier result) still served."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import event, func, select, update

from app.db.blobs import CHUNK, read_blob
from app.db.models import Blob, BlobChunk, Callback, Job, Result
from app.domain.errors import BadArgument, LeaseNotHeld, NotFound, TooLarge
from app.domain.matching import WorkerSpec
from app.services import claims, leases, result_cache
from protocol.xmlrpc import wire
from tests.conftest import WRITER, add_client, submit_job

WRITER_SPEC = (WorkerSpec.parse(WRITER),)


@pytest.fixture
def rt(make_runtime, any_db_url):  # type: ignore[no-untyped-def]
    return make_runtime(database_url=any_db_url, broker=False)


@contextmanager
def statements(rt) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    seen: list[str] = []

    def on_statement(conn, cursor, statement, *a):  # type: ignore[no-untyped-def]
        seen.append(" ".join(statement.split())[:80])

    event.listen(rt.db.engine, "before_cursor_execute", on_statement)
    try:
        yield seen
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", on_statement)


def _claim(rt, owner: str = "factory-1"):  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        return claims.claim(s, rt.now(), rt.policy, owner=owner, workers=WRITER_SPEC)


def _finish(rt, guid: str, token: str | None, document: Callable[[], Iterable[bytes] | bytes], *, fmt: str = "pdf",  # type: ignore[no-untyped-def]
            owner: str = "factory-1", max_bytes: int = 10**7) -> leases.Finished:
    return leases.finish_job(rt.db, rt.now(), rt.notifier, guid=guid, owner=owner, token=token, fmt=fmt, document=document, max_bytes=max_bytes)


def _job(rt, job_id: int) -> Job:  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        job = s.scalars(select(Job).where(Job.id == job_id)).one()
        s.expunge(job)  # the read session's rollback would expire it
        return job


def _blobs(rt) -> int:  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        return int(s.scalar(select(func.count()).select_from(Blob)) or 0)


@pytest.mark.parametrize(
    ("filename", "job_fmt", "fmt"),
    [
        ("doc.odt", "pdf", "pdf"),
        ("a.b.c.odt", "", "png"),
        ("slides.v1.odt", "odf", " ODF "),
        (".odt", "pdf", "pdf"),
        ("trailing..odt", "pdf", "pdf"),
        ("my report (1).v2.odt", "", "odf"),
    ],
)
def test_fast_finish_writes_what_the_general_path_writes(rt, filename, job_fmt, fmt):
    client = add_client(rt)
    job_id, guid = submit_job(rt, client, filename=filename, fmt=job_fmt)
    c = _claim(rt)
    data = b"%PDF-1.7 " + filename.encode()
    with statements(rt) as seen:
        done = _finish(rt, guid, c.lease_token, lambda: [data[:5], data[5:]], fmt=fmt)
    if rt.db.is_sqlite:  # BEGIN IMMEDIATE, UPDATE ... RETURNING, blob, chunk, result (COMMIT is in-process)
        assert len(seen) == 5, seen
    else:  # one statement, autocommit
        assert len(seen) == 1 and seen[0].startswith("WITH u AS"), seen
    norm = fmt.strip().lower()
    job = _job(rt, job_id)
    assert (job.state, job.lease_token, job.lease_expires, job.lease_owner) == (3, None, None, "factory-1")
    assert job.finished_at == rt.now() and job.updated_at == rt.now() and job.failure_reason is None
    assert (done.application, done.version) == (job.application, job.version)
    with rt.db.read_session() as s:
        res = s.scalars(select(Result).where(Result.job_id == job_id)).one()
        blob = s.get(Blob, res.blob_id)
        assert res.guid == done.result_guid and res.format == norm and res.created_at == rt.now()
        assert res.filename == result_cache.result_filename(filename, norm, job.doctype)
        assert blob is not None and (blob.size, blob.sha256) == (len(data), hashlib.sha256(data).hexdigest())
        assert read_blob(s, res.blob_id) == data


def test_refusals_are_those_of_the_general_path_in_its_order(rt, clock):
    client = add_client(rt)
    job_id, guid = submit_job(rt, client, fmt="pdf")
    c = _claim(rt)
    ok = b"%PDF"
    blobs = _blobs(rt)

    def bad_base64() -> Iterator[bytes]:
        return wire.decode_base64("not base64!", 10**6)

    with pytest.raises(NotFound):
        _finish(rt, "no-such-guid", c.lease_token, lambda: ok)
    with pytest.raises(NotFound):  # the lease first, then the document
        _finish(rt, "no-such-guid", c.lease_token, bad_base64)
    with pytest.raises(LeaseNotHeld):
        _finish(rt, guid, c.lease_token, bad_base64, owner="factory-2")
    with pytest.raises(LeaseNotHeld):
        _finish(rt, guid, "wrong-token", lambda: ok)
    with pytest.raises(LeaseNotHeld):
        _finish(rt, guid, "t\u00e9ken", lambda: ok)
    with pytest.raises(BadArgument, match="asks for format 'pdf'"):
        _finish(rt, guid, c.lease_token, lambda: ok, fmt="png")
    with pytest.raises(BadArgument, match="not valid base64"):
        _finish(rt, guid, c.lease_token, bad_base64)
    with pytest.raises(BadArgument, match="result document is empty"):
        _finish(rt, guid, c.lease_token, lambda: b"")
    with pytest.raises(TooLarge):
        _finish(rt, guid, c.lease_token, lambda: ok, max_bytes=3)
    assert _job(rt, job_id).state == 1 and _blobs(rt) == blobs  # nothing written
    clock.advance(301)
    with pytest.raises(LeaseNotHeld):
        _finish(rt, guid, c.lease_token, lambda: ok)
    assert _job(rt, job_id).state == 1 and _blobs(rt) == blobs


def test_finish_without_a_token_relies_on_the_factory(rt):
    client = add_client(rt)
    job_id, guid = submit_job(rt, client, fmt="")
    _claim(rt)
    with pytest.raises(BadArgument, match="must be one of"):
        _finish(rt, guid, None, lambda: b"%PDF", fmt="doc")
    with pytest.raises(LeaseNotHeld):
        _finish(rt, guid, None, lambda: b"%PDF", owner="factory-2")
    assert _finish(rt, guid, None, lambda: b"%PDF").result_guid
    assert _job(rt, job_id).state == 3


def test_cases_the_fast_path_leaves_to_the_general_path(rt):
    client = add_client(rt)
    # A success callback is owed.
    cb_job, cb_guid = submit_job(rt, client, success_url="http://example.test/done")
    c = _claim(rt)
    _finish(rt, cb_guid, c.lease_token, lambda: b"%PDF callback")
    with rt.db.read_session() as s:
        assert s.scalars(select(Callback.job_status).where(Callback.job_id == cb_job)).all() == [3]

    # A follower waits for the job: it completes with the same bytes.
    leader, leader_guid = submit_job(rt, client, b"PK leader")
    follower, _ = submit_job(rt, client, b"PK leader")
    with rt.db.session() as s:
        s.execute(update(Job).where(Job.id == follower).values(follows_job_id=leader))
    c = _claim(rt)
    assert c.id == leader
    _finish(rt, leader_guid, c.lease_token, lambda: b"%PDF leader")
    assert _job(rt, follower).state == 3 and _job(rt, follower).cached_from == leader
    with rt.db.read_session() as s:
        blobs = {r.job_id: r.blob_id for r in s.scalars(select(Result).where(Result.job_id.in_([leader, follower])))}
    assert blobs[leader] == blobs[follower]

    # A requeued job's earlier result is replaced.
    again, again_guid = submit_job(rt, client, b"PK again")
    c = _claim(rt)
    assert c.id == again
    with rt.db.session() as s:
        old_blob = s.scalar(select(Blob.id).order_by(Blob.id).limit(1))
        s.add(Result(guid="00000000-0000-0000-0000-000000000001", job_id=again, blob_id=old_blob, format="pdf", filename="old.pdf", created_at=rt.now()))
    done = _finish(rt, again_guid, c.lease_token, lambda: b"%PDF new")
    with rt.db.read_session() as s:
        assert s.scalars(select(Result.guid).where(Result.job_id == again)).all() == [done.result_guid]

    # Several chunks: streamed into the blob chunk by chunk.
    big_job, big_guid = submit_job(rt, client, b"PK big")
    c = _claim(rt)
    payload = bytes(range(256)) * (CHUNK // 256) + b"tail"
    done = _finish(rt, big_guid, c.lease_token, lambda: iter([payload[:1000], payload[1000:]]))
    with rt.db.read_session() as s:
        res = s.scalars(select(Result).where(Result.job_id == big_job)).one()
        assert res.guid == done.result_guid
        assert s.scalar(select(func.count()).select_from(BlobChunk).where(BlobChunk.blob_id == res.blob_id)) == 2
        assert read_blob(s, res.blob_id) == payload


def test_finish_in_a_callers_transaction_takes_the_fast_path_too(rt):
    """`leases.finish` in a session (the push factory, scripts): the fast statement inside the
    transaction; a refusal from the general path still rolls everything back."""
    client = add_client(rt)
    job_id, guid = submit_job(rt, client)
    c = _claim(rt)
    with pytest.raises(BadArgument), rt.db.session() as s:
        leases.finish(s, rt.now(), rt.notifier, guid=guid, owner="factory-1", token=c.lease_token, fmt="png", parts=b"x", max_bytes=10**6)
    with statements(rt) as seen, rt.db.session() as s:
        leases.finish(s, rt.now(), rt.notifier, guid=guid, owner="factory-1", token=c.lease_token, fmt="pdf", parts=b"%PDF", max_bytes=10**6)
    assert len(seen) == (5 if rt.db.is_sqlite else 1), seen
    assert _job(rt, job_id).state == 3


def test_concurrent_finishes_of_one_lease_complete_it_once(rt):
    """8 threads finish the same job with the same lease at once: one result, the others are
    refused (LeaseNotHeld) and store nothing."""
    import threading

    client = add_client(rt)
    job_id, guid = submit_job(rt, client)
    c = _claim(rt)
    blobs = _blobs(rt)
    barrier = threading.Barrier(8)
    outcomes: list[str] = []
    lock = threading.Lock()

    def finisher(n: int) -> None:
        barrier.wait()
        try:
            _finish(rt, guid, c.lease_token, lambda: b"%PDF from " + str(n).encode())
            got = "ok"
        except LeaseNotHeld:
            got = "refused"
        with lock:
            outcomes.append(got)

    threads = [threading.Thread(target=finisher, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["ok"] + ["refused"] * 7
    assert _job(rt, job_id).state == 3 and _blobs(rt) == blobs + 1
    with rt.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Result).where(Result.job_id == job_id)) == 1
