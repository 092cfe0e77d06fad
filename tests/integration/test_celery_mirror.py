"""The Celery mirror and beat tasks on real brokers: embedded sqla+sqlite, Redis and RabbitMQ.

Uses pytest-celery's in-process `celery_app` / `celery_worker` fixtures (its Docker fixtures cannot
run here). The convhub tasks are registered on the test app and the worker gets our Runtime with a
FakeClock, so lease expiry is driven by moving time, not by sleeping.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from app.db.models import Job
from app.services.auth import FactoryIdentity
from app.services.poll import poll
from tasks import jobs as task_jobs
from tasks.base import attach_runtime
from tasks.celery_app import make_celery
from tests.conftest import (
    WRITER,
    add_client,
    add_factory,
    celery_test_config,
    close_runtime,
    make_settings,
    submit_job,
    wait_for,
)

PAIR = ("LibreOffice Writer", "7.4")
STALE = timedelta(seconds=120)


@pytest.fixture(params=["sqla", "redis", "amqp"])
def broker_url(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqla":
        (tmp_path / "var").mkdir(exist_ok=True)
        return f"sqla+sqlite:///{tmp_path / 'var' / 'broker.db'}"
    if request.param == "redis":
        return request.getfixturevalue("redis_broker_url")
    return request.getfixturevalue("amqp_broker_url")


@pytest.fixture
def settings(tmp_path, broker_url):  # type: ignore[no-untyped-def]
    return make_settings(tmp_path, broker_url=broker_url, reclaim_interval_seconds=1)


@pytest.fixture
def celery_config(settings):  # type: ignore[no-untyped-def]
    return celery_test_config(settings)


@pytest.fixture
def celery_worker_parameters():  # type: ignore[no-untyped-def]
    """Like `convhub worker`: the server's worker consumes only its own queue, never the per-pair ones."""
    return {"queues": ("convhub",)}


@pytest.fixture
def rt(settings, clock, celery_app):  # type: ignore[no-untyped-def]
    from app.runtime import build_runtime

    celery_app.conf.convhub_settings = settings
    task_jobs.register(celery_app)
    runtime = build_runtime(settings, clock=clock, celery=celery_app)
    attach_runtime(celery_app, runtime)  # the worker's tasks run with this runtime (fixed clock)
    yield runtime
    attach_runtime(celery_app, None)
    close_runtime(runtime)


def _factory(rt) -> FactoryIdentity:  # type: ignore[no-untyped-def]
    add_factory(rt, "f1", "factory-secret-1", (WRITER,))
    with rt.db.read_session() as s:
        return rt.auth.factory(s, "f1", "factory-secret-1", rt.now())


def _length(rt) -> int:  # type: ignore[no-untyped-def]
    return rt.mirror.queue_length(*PAIR)


def test_submit_publishes_after_commit_and_poll_takes_the_message(rt):
    factory = _factory(rt)
    client = add_client(rt)
    ids = [submit_job(rt, client)[0] for _ in range(3)]
    assert _length(rt) == 3
    # a rolled-back submit publishes nothing
    with pytest.raises(RuntimeError):
        with rt.db.session() as s:
            from app.services import client_views, submission

            content = submission.upload(s, rt.now(), client_id=client, filename="x.odt", parts=b"x", max_bytes=100)
            submission.enqueue(s, rt.now(), rt.mirror, client_id=client, content=content, application=PAIR[0], version=PAIR[1])
            raise RuntimeError("roll back")
    assert _length(rt) == 3
    got = poll(rt.db, rt.now(), rt.policy, rt.mirror, factory)
    assert got.id == ids[0] and _length(rt) == 2
    # a deleted job's message lingers: a claim costs one broker round trip, so on Redis and SQL it
    # takes only its own message; on RabbitMQ its get drops the stale head and leaves the claim's
    # own message (now stale). Either way one stale message is left, and reconciliation trims it.
    from app.services import client_views, maintenance, submission

    with rt.db.session() as s:
        client_views.delete_one(s, rt.now(), client, ids[1])
    assert _length(rt) == 2
    got = poll(rt.db, rt.now(), rt.policy, rt.mirror, factory)
    assert got.id == ids[2] and _length(rt) == 1
    assert poll(rt.db, rt.now(), rt.policy, rt.mirror, factory) is None
    with rt.db.session() as s:
        maintenance.reconcile(s, rt.mirror, rt.now(), stale_after=STALE, known_pairs=[PAIR])
    assert _length(rt) == 0  # queue length == backlog after reconciliation


def test_reconcile_republishes_lost_messages(rt):
    factory = _factory(rt)
    client = add_client(rt)
    ids = [submit_job(rt, client)[0] for _ in range(4)]
    with rt.celery.pool.acquire(block=True) as conn:  # a broker restart without persistence
        from tasks.celery_app import pair_queue

        pair_queue(*PAIR).bind(conn.default_channel).purge()
    assert _length(rt) == 0
    from app.services import maintenance

    with rt.db.session() as s:
        repaired = maintenance.reconcile(s, rt.mirror, rt.now(), stale_after=STALE)
    assert repaired == {"LibreOffice Writer|7.4": 4} and _length(rt) == 4
    assert poll(rt.db, rt.now(), rt.policy, rt.mirror, factory).id == ids[0]
    assert _length(rt) == 3


def test_beat_reclaim_task_on_a_real_worker(rt, clock, celery_worker):
    factory = _factory(rt)
    client = add_client(rt)
    job_id, _ = submit_job(rt, client)
    claimed = poll(rt.db, rt.now(), rt.policy, rt.mirror, factory)
    assert claimed.id == job_id and _length(rt) == 0
    clock.advance(rt.settings.lease_seconds)
    # what beat sends every reclaim interval, executed by the real worker
    rt.celery.send_task("convhub.reclaim", queue="convhub")

    def queued() -> tuple[int, int] | None:
        with rt.db.read_session() as s:
            job = s.scalar(select(Job).where(Job.id == job_id))
            return (job.state, job.attempts) if job.state == 0 else None

    assert wait_for(queued, 30, "the job back in QUEUED") == (0, 1)
    # back in its queue: the mirror is re-published, just after the commit that requeued the job
    wait_for(lambda: _length(rt) == 1, 10, "the job's message back in its queue")
    again = poll(rt.db, rt.now(), rt.policy, rt.mirror, factory)
    assert again.id == job_id and again.attempt == 2


def test_claims_fall_back_to_the_database_when_the_broker_is_down(tmp_path, clock):
    from app.runtime import build_runtime

    settings = make_settings(tmp_path, broker_url="amqp://guest:guest@127.0.0.1:1//")  # nothing listens on port 1
    rt = build_runtime(settings, clock=clock)
    try:
        factory = _factory(rt)
        client = add_client(rt)
        job_id, _ = submit_job(rt, client)  # publish fails after commit: logged, repaired later
        got = poll(rt.db, rt.now(), rt.policy, rt.mirror, factory)
        assert got is not None and got.id == job_id
    finally:
        close_runtime(rt)


def _drain_ids(rt) -> list[int]:  # type: ignore[no-untyped-def]
    """Take every message off the pair's queue and return their job ids (destructive)."""
    from tasks.celery_app import pair_queue
    from tasks.mirror import message_job_id

    ids = []
    with rt.celery.pool.acquire(block=True) as conn:
        q = pair_queue(*PAIR).bind(conn.default_channel)
        while (msg := q.get(no_ack=False, accept=["json"])) is not None:
            ids.append(message_job_id(msg.payload))
            msg.ack()
    return ids


def test_reconcile_finds_lost_messages_hidden_by_stale_ones(rt, clock):
    """One message lost, one stale (deleted job): equal lengths hide the loss until the backlog stalls."""
    from app.services import client_views, maintenance
    from tasks.celery_app import pair_queue
    from tasks.mirror import message_job_id

    client = add_client(rt)
    ids = [submit_job(rt, client)[0] for _ in range(4)]
    with rt.celery.pool.acquire(block=True) as conn:  # lose the head message (job ids[0] stays QUEUED)
        msg = pair_queue(*PAIR).bind(conn.default_channel).get(no_ack=False, accept=["json"])
        assert message_job_id(msg.payload) == ids[0]
        msg.ack()
    with rt.db.session() as s:
        client_views.delete_one(s, rt.now(), client, ids[3])  # its message lingers
    assert _length(rt) == 3  # == backlog of 3: the loss is hidden

    with rt.db.session() as s:  # a fresh backlog: leave the stale message to drain at the head
        assert maintenance.reconcile(s, rt.mirror, rt.now(), stale_after=STALE) == {}
    clock.advance(STALE.total_seconds() + 1)
    with rt.db.session() as s:  # nothing moved: rebuild
        assert maintenance.reconcile(s, rt.mirror, rt.now(), stale_after=STALE) == {"LibreOffice Writer|7.4": 0}
    clock.advance(STALE.total_seconds() + 1)
    with rt.db.session() as s:  # still the same stall: not rebuilt again
        assert maintenance.reconcile(s, rt.mirror, rt.now(), stale_after=STALE) == {}
    assert _drain_ids(rt) == ids[:3]


def test_reconcile_drops_stale_messages_of_an_idle_pair(rt):
    """Messages of jobs no longer QUEUED (deleted, or claimed while another process held their message)
    would otherwise stay in an idle pair's queue until new work pushed them to the head."""
    from app.services import admin, client_views, maintenance

    _factory(rt)  # the beat task checks every pair a registered factory serves, idle or not
    client = add_client(rt)
    ids = [submit_job(rt, client)[0] for _ in range(3)]
    with rt.db.session() as s:
        for jid in ids:
            client_views.delete_one(s, rt.now(), client, jid)
    assert _length(rt) == 3

    def reconcile() -> dict[str, int]:
        with rt.db.session() as s:
            pairs = admin.served_pairs(s, include_disabled=True)
            return maintenance.reconcile(s, rt.mirror, rt.now(), stale_after=STALE, known_pairs=pairs)

    assert reconcile() == {"LibreOffice Writer|7.4": -3}
    assert _length(rt) == 0
    assert reconcile() == {}  # nothing left to do


def test_reconcile_trim_stops_at_a_live_message(rt):
    from app.services import client_views, maintenance

    client = add_client(rt)
    ids = [submit_job(rt, client)[0] for _ in range(3)]
    with rt.db.session() as s:  # the head stays QUEUED; the two behind it go stale
        client_views.delete_one(s, rt.now(), client, ids[1])
        client_views.delete_one(s, rt.now(), client, ids[2])
    with rt.db.session() as s:
        assert maintenance.reconcile(s, rt.mirror, rt.now(), stale_after=STALE) == {}
    assert sorted(_drain_ids(rt)) == ids  # nothing dropped past the live head


def test_the_embedded_broker_sheds_consumed_messages(tmp_path, clock):
    """kombu's SQL transport keeps every taken message as an invisible row; reconcile deletes them."""
    from sqlalchemy import create_engine, text

    from app.runtime import build_runtime

    (tmp_path / "var").mkdir(exist_ok=True)
    broker_db = tmp_path / "var" / "broker.db"
    settings = make_settings(tmp_path, broker_url=f"sqla+sqlite:///{broker_db}")
    celery = make_celery(settings)
    rt = build_runtime(settings, clock=clock, celery=celery)
    try:
        factory = _factory(rt)
        client = add_client(rt)
        ids = [submit_job(rt, client)[0] for _ in range(6)]
        engine = create_engine(f"sqlite:///{broker_db}")

        def rows() -> dict[bool, int]:
            with engine.connect() as c:
                return {bool(v): n for v, n in c.execute(text("SELECT visible, count(*) FROM kombu_message GROUP BY visible"))}

        assert poll(rt.db, rt.now(), rt.policy, rt.mirror, factory).id == ids[0]
        assert rt.mirror.settle(30)  # the removal is the mirror's drain thread's
        assert rows() == {True: 5}  # a claim deletes its message's row outright
        from app.services import client_views
        from tasks.celery_app import pair_queue

        with rt.db.session() as s:
            for jid in ids[1:4]:
                client_views.delete_one(s, rt.now(), client, jid)
        with rt.celery.pool.acquire(block=True) as conn:  # consumers (workers, push factories) get and ack
            q = pair_queue(*PAIR).bind(conn.default_channel)
            for _ in range(3):
                q.get(no_ack=False, accept=["json"]).ack()
        assert rows() == {False: 3, True: 2}  # the three taken messages are still there, invisible
        attach_runtime(celery, rt)
        celery.tasks["convhub.reconcile"].apply()  # what beat runs every reconcile interval
        assert rows() == {True: 2}
        assert _length(rt) == 2 and poll(rt.db, rt.now(), rt.policy, rt.mirror, factory).id == ids[4]
        engine.dispose()
    finally:
        attach_runtime(celery, None)
        close_runtime(rt)


def test_a_reclaim_batch_publishes_messages_that_polls_take(rt, clock):
    """`publish_many` (a reclaim batch) sends the same task messages as `publish`: each poll finds
    and removes its job's message, and the queue ends empty."""
    from app.services import maintenance

    factory = _factory(rt)
    client = add_client(rt)
    ids = [submit_job(rt, client, f"PK batch {i}".encode())[0] for i in range(3)]
    assert [poll(rt.db, rt.now(), rt.policy, rt.mirror, factory).id for _ in ids] == ids
    assert _length(rt) == 0
    clock.advance(rt.settings.lease_seconds)
    assert sorted(j for j, _ in maintenance.reclaim_all(rt.db, rt.now(), rt.notifier, rt.mirror)) == ids
    assert _length(rt) == 3
    assert sorted(poll(rt.db, rt.now(), rt.policy, rt.mirror, factory).id for _ in ids) == ids
    assert _length(rt) == 0


def test_the_embedded_broker_file_is_in_wal_mode(tmp_path, clock):
    """One fsync of the log per commit instead of the rollback journal's several (each claim's
    removal, publish and get is a commit under SQLite's one writer lock)."""
    import sqlite3

    from app.runtime import build_runtime

    settings = make_settings(tmp_path)  # the embedded default: sqla+sqlite:///<data dir>/broker.db
    rt = build_runtime(settings, clock=clock)
    try:
        _factory(rt)
        submit_job(rt, add_client(rt))
        assert _length(rt) == 1
        with sqlite3.connect(settings.broker_url.removeprefix("sqla+sqlite:///")) as c:
            assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        # The connections kombu's engine opens commit without an fsync (synchronous=NORMAL, 1;
        # sqlite3's default is FULL, 2).
        with rt.celery.connection_for_write() as conn:
            assert conn.default_channel.session.execute(text("PRAGMA synchronous")).scalar() == 1
    finally:
        close_runtime(rt)
