"""The push-style factory (tasks/factory_worker.py) as a real Celery worker on real brokers.

An in-process worker (celery.contrib.testing.worker.start_worker, threads pool) consumes only the
pair queues of a fast in-test converter; the server side (submit, poll, mirror) is the production
code on the same database and broker. Embedded sqla+sqlite and Redis.
"""

from __future__ import annotations

import threading
from collections import Counter
from contextlib import contextmanager

import pytest
from celery.contrib.testing.worker import start_worker
from sqlalchemy import func, select

from app.db.blobs import read_blob
from app.db.models import Job, Result
from app.domain.states import JobState
from app.factory.converters import CommandConverter, Converter, WorkerSpec, parse_job
from app.factory.errors import ConversionCancelled, ConversionError
from app.runtime import build_runtime
from app.services import claims, leases, maintenance
from app.services.poll import poll
from tasks import factory_worker
from tasks.celery_app import make_celery, pair_queue
from tests.conftest import (
    REDIS_URL,
    WRITER,
    add_client,
    add_factory,
    close_runtime,
    make_settings,
    redis_ok,
    require,
    submit_job,
    wait_for,
)
from tests.factorykit import tiny_odt

PAIR = ("LibreOffice Writer", "7.4")
OTHER = ("AbiWord", "3.0")


class FakeConverter(Converter):
    """Serves LibreOffice Writer 7.4; records every conversion; 'FAIL' documents fail, 'BLOCK' ones
    wait until cancelled."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.started = threading.Event()

    def workers(self) -> list[WorkerSpec]:
        return [WorkerSpec(PAIR[0], PAIR[1], frozenset({"odt"}), frozenset({"pdf", "png", "odf"}))]

    def convert(self, job, deadline_seconds=None, cancel=None):  # type: ignore[no-untyped-def]
        spec = parse_job(job)
        with self.lock:
            self.calls[spec.job_id] += 1
        self.started.set()
        if spec.document.startswith(b"FAIL"):
            raise ConversionError("bad document: cannot render")
        if spec.document.startswith(b"BLOCK"):
            assert cancel is not None
            if cancel.wait(30):
                raise ConversionCancelled("cancelled")
            raise ConversionError("never cancelled")
        return spec.format, b"%PDF-1.4 converted " + spec.document


# The session's own Redis database (CONVHUB_TEST_REDIS_URL): test sessions running at the same time
# each use their own, and the fixture below flushes it before and after each test.
REDIS_PUSH_URL = REDIS_URL


@pytest.fixture
def redis_push_url():  # type: ignore[no-untyped-def]
    require("Redis", redis_ok())
    import redis

    r = redis.Redis.from_url(REDIS_PUSH_URL)
    r.flushdb()
    yield REDIS_PUSH_URL
    r.flushdb()
    r.close()


@pytest.fixture(params=["sqla", "redis"])
def broker_url(request, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "sqla":
        (tmp_path / "var").mkdir(exist_ok=True)
        return f"sqla+sqlite:///{tmp_path / 'var' / 'broker.db'}"
    return request.getfixturevalue("redis_push_url")


@pytest.fixture
def sqla_url(tmp_path):  # type: ignore[no-untyped-def]
    (tmp_path / "var").mkdir(exist_ok=True)
    return f"sqla+sqlite:///{tmp_path / 'var' / 'broker.db'}"


@pytest.fixture
def push(tmp_path):  # type: ignore[no-untyped-def]
    """push(converter, broker_url=...) -> (server runtime, factory app, PushFactory, queue names)."""
    made = []

    def _make(converter: Converter, broker_url: str, **settings_kw):  # type: ignore[no-untyped-def]
        settings = make_settings(tmp_path, broker_url=broker_url, **settings_kw)
        server = build_runtime(settings, celery=make_celery(settings))  # the web/CLI side
        app, factory, names = factory_worker.make_factory_app(settings, converter, owner="push-1", timeout=10)
        made.extend([server, factory.rt])
        return server, app, factory, names

    yield _make
    for rt in made:
        close_runtime(rt)


@contextmanager
def worker(app, names, concurrency: int = 2):  # type: ignore[no-untyped-def]
    with start_worker(
        app, pool="threads", concurrency=concurrency, perform_ping_check=False, queues=names, shutdown_timeout=30,
        loglevel="WARNING",
    ) as w:
        yield w




def states(rt, ids):  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        rows = s.execute(select(Job.id, Job.state, Job.attempts, Job.lease_owner).where(Job.id.in_(ids))).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_queues_are_the_converters_pairs():
    conv = CommandConverter("c", application="Copy Tool", version="1.0", doctypes=["odt"], formats=["odf"], default_format="odf", command="cp {input} {output}")
    assert [q.name for q in factory_worker.queues_for(conv.workers() + FakeConverter().workers())] == [
        "convert.copy-tool.1-0",
        "convert.libreoffice-writer.7-4",
    ]
    assert factory_worker.domain_workers(FakeConverter().workers())[0].formats == frozenset({"pdf", "png", "odf"})


def test_submitted_jobs_complete_exactly_once(push, broker_url):
    conv = FakeConverter()
    server, app, factory, names = push(conv, broker_url)
    assert names == ["convert.libreoffice-writer.7-4"]
    client = add_client(server)
    ids = [submit_job(server, client, b"doc %d" % i, fmt=("pdf", "png", "odf", "")[i % 4])[0] for i in range(8)]
    other, _ = submit_job(server, client, application=OTHER[0], version=OTHER[1])
    # Duplicates, as reconciliation after a lost ack or a redelivery could leave: dropped, not re-run.
    for job_id in ids[:3]:
        server.mirror.publish(job_id, *PAIR)
    assert server.mirror.queue_length(*PAIR) == 11

    with worker(app, names):
        wait_for(lambda: all(s[0] == 3 for s in states(server, ids).values()), 30, "all COMPLETE")
        wait_for(lambda: factory.counts["dropped"] == 3, 10, "duplicates dropped")
        wait_for(lambda: server.mirror.queue_length(*PAIR) == 0, 10, "empty pair queue")

    assert factory.counts == Counter(finished=8, dropped=3)
    with server.db.read_session() as s:
        guids = dict(s.execute(select(Job.id, Job.guid).where(Job.id.in_(ids))).all())
        assert conv.calls == Counter({guids[i]: 1 for i in ids})  # converted exactly once each
        for job_id, (state, attempts, owner) in states(server, ids).items():
            assert (state, attempts, owner) == (3, 1, "push-1")
            assert s.scalar(select(func.count()).select_from(Result).where(Result.job_id == job_id)) == 1
        fmts = [s.scalar(select(Result.format).where(Result.job_id == i)) for i in ids]
        assert fmts == ["pdf", "png", "odf", "pdf"] * 2  # empty format: the converter's default (pdf)
        blob = s.scalar(select(Result.blob_id).where(Result.job_id == ids[1]))
        assert read_blob(s, blob) == b"%PDF-1.4 converted doc 1"
    # Only its own pairs are consumed: the AbiWord job and its message are untouched.
    assert states(server, [other])[other][0] == 0
    assert server.mirror.queue_length(*OTHER) == 1


def test_database_away_at_claim_requeues_the_message(push, broker_url, monkeypatch):
    """The first two claims find the database unavailable: the message goes back to its queue (not
    acked and lost until reconciliation) and the job completes once the database answers again."""
    from app.domain.errors import Unavailable

    conv = FakeConverter()
    server, app, factory, names = push(conv, broker_url)
    factory.db_backoff = 0.01
    client = add_client(server)
    job_id, _ = submit_job(server, client)
    real_claim, failures = claims.claim, [2]

    def flaky_claim(*a, **kw):  # type: ignore[no-untyped-def]
        if failures[0]:
            failures[0] -= 1
            raise Unavailable("database unavailable")
        return real_claim(*a, **kw)

    monkeypatch.setattr(factory_worker.claims, "claim", flaky_claim)
    with worker(app, names):
        wait_for(lambda: states(server, [job_id])[job_id][0] == 3, 30, "COMPLETE")
    assert factory.counts == Counter(requeued=2, finished=1)
    assert states(server, [job_id])[job_id] == (3, 1, "push-1")
    assert server.mirror.queue_length(*PAIR) == 0


def test_job_claimed_by_poll_is_dropped_and_stays_with_the_pull_factory(push, broker_url):
    conv = FakeConverter()
    server, app, factory, names = push(conv, broker_url)
    add_factory(server, "pull-1", "factory-secret-1", (WRITER,))
    with server.db.read_session() as s:
        ident = server.auth.factory(s, "pull-1", "factory-secret-1", server.now())
    client = add_client(server)
    job_id, guid = submit_job(server, client)
    claimed = poll(server.db, server.now(), server.policy, server.mirror, ident)
    assert claimed is not None and claimed.id == job_id
    assert server.mirror.queue_length(*PAIR) == 0
    # The pull side could not take the message off (broker hiccup, or the Celery worker had it
    # reserved): it is delivered to the push factory anyway.
    server.mirror.publish(job_id, *PAIR)
    assert server.mirror.queue_length(*PAIR) == 1

    with worker(app, names):
        wait_for(lambda: factory.counts["dropped"] == 1, 20, "message dropped")
        wait_for(lambda: server.mirror.queue_length(*PAIR) == 0, 10, "empty pair queue")

    assert conv.calls == Counter() and factory.counts == Counter(dropped=1)
    assert states(server, [job_id])[job_id] == (1, 1, "pull-1")  # still leased to the pull factory
    with server.db.session() as s:
        leases.finish(s, server.now(), server.notifier, guid=guid, owner="pull-1", token=claimed.lease_token,
                    fmt="pdf", parts=b"%PDF pulled", max_bytes=1 << 20)
    assert states(server, [job_id])[job_id][0] == 3


def test_conversion_error_fails_the_attempt_and_the_requeued_job_comes_back(push, sqla_url):
    conv = FakeConverter()
    server, app, factory, names = push(conv, sqla_url)
    client = add_client(server)
    job_id, _ = submit_job(server, client, b"FAIL me")
    with worker(app, names, concurrency=1):
        # Each leases.fail re-publishes the message (attempts left), so the job comes back until
        # max_attempts (3) is used up and it is FAILED.
        wait_for(lambda: states(server, [job_id])[job_id][0] == 4, 30, "FAILED")
        wait_for(lambda: server.mirror.queue_length(*PAIR) == 0, 10, "empty pair queue")
    with server.db.read_session() as s:
        job = s.get(Job, job_id)
        assert (job.attempts, job.lease_owner, job.failure_reason) == (3, None, "bad document: cannot render")
    assert factory.counts == Counter(failed=3)


def test_command_converter_with_a_real_subprocess(push, sqla_url):
    conv = CommandConverter("copy", application="Copy Tool", version="1.0", doctypes=["odt"], formats=["odf"], default_format="odf", command="cp {input} {output}")
    server, app, factory, names = push(conv, sqla_url)
    assert names == ["convert.copy-tool.1-0"]
    client = add_client(server)
    doc = tiny_odt()
    job_id, _ = submit_job(server, client, doc, application="Copy Tool", version="1.0", fmt="odf")
    with worker(app, names):
        wait_for(lambda: states(server, [job_id])[job_id][0] == 3, 30, "COMPLETE")
    with server.db.read_session() as s:
        result = s.scalar(select(Result).where(Result.job_id == job_id))
        assert (result.format, result.filename) == ("odf", "doc.odt")
        assert read_blob(s, result.blob_id) == doc


def test_heartbeat_moves_to_processing_and_a_lost_lease_abandons_the_job(tmp_path, clock, sqla_url):
    """Called directly (no worker): a FakeClock drives the lease; the heartbeat runs every 5/3 s."""
    settings = make_settings(tmp_path, broker_url=sqla_url, lease_seconds=5, max_lease_total_seconds=60)
    rt = build_runtime(settings, clock=clock, celery=make_celery(settings))
    try:
        conv = FakeConverter()
        factory = factory_worker.PushFactory(rt, conv, owner="push-1", timeout=30)
        client = add_client(rt)
        job_id, guid = submit_job(rt, client, b"BLOCK until cancelled")
        outcome: list[str] = []
        t = threading.Thread(target=lambda: outcome.append(factory.handle(job_id)))
        t.start()
        assert conv.started.wait(10)
        assert states(rt, [job_id])[job_id] == (2, 1, "push-1")  # PROCESSING as soon as it started
        clock.advance(6)  # the lease runs out; the beat task's reclaim requeues the job
        with rt.db.session() as s:
            assert maintenance.reclaim_expired(s, rt.now(), rt.notifier, rt.mirror) == [(job_id, JobState.QUEUED)]
        t.join(15)
        assert outcome == ["abandoned"]  # the next extend saw 409 and cancelled the conversion
        state, attempts, owner = states(rt, [job_id])[job_id]
        assert (state, attempts, owner) == (0, 1, None)  # requeued by reclaim; no finish, no fail
        with rt.db.read_session() as s:
            assert s.scalar(select(func.count()).select_from(Result)) == 0
        # Reclaim re-published the message (the original one was never consumed here: handle() was called directly).
        assert rt.mirror.queue_length(*PAIR) == 2
    finally:
        close_runtime(rt)


def test_factory_celery_cli_without_the_server_stack_is_one_clear_line(monkeypatch, capsys):
    import builtins

    from app import cli

    real_import = builtins.__import__

    def no_tasks(name, *args, **kw):  # type: ignore[no-untyped-def]
        if name == "tasks" or name.startswith("tasks."):
            raise ModuleNotFoundError("No module named 'celery'", name="celery")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_tasks)
    assert cli.main(["factory", "celery", "--name", "x"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'convhub[server]'" in err and "celery" in err and err.count("\n") == 1


def test_pair_queue_names_match_the_mirror():
    assert pair_queue(*PAIR).name == factory_worker.queues_for(FakeConverter().workers())[0].name


def test_factory_celery_is_registered_by_the_server_cli_not_by_the_factory_cli(capsys):
    from app import cli
    from app.factory import cli as factory_cli

    args = cli.build_parser().parse_args(["factory", "celery", "--name", "x", "--concurrency", "2"])
    assert args.func is cli.cmd_factory_celery and (args.name, args.concurrency) == ("x", 2)
    assert cli.build_parser().parse_args(["factory", "run", "--once"]).func is factory_cli.main
    with pytest.raises(SystemExit):  # the factory's own CLI (standard library only) has no celery command
        factory_cli.standalone(["celery", "--name", "x"])
    assert "invalid choice: 'celery'" in capsys.readouterr().err
