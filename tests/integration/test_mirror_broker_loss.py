"""The mirror after the broker lost its data: Redis FLUSHDB (as a restart without persistence) and a
deleted RabbitMQ queue. Every process still remembers the queue as declared (the mirror's cache and
kombu's), so before the fix re-published messages went nowhere and the queue stayed empty.

Two reconciliations later the queue lengths equal the backlogs, and a rebuild reports the length it
read back, not what it sent."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from app.services import admin, maintenance
from app.services.poll import poll
from tasks.celery_app import pair_queue
from tests.conftest import REDIS_URL, WRITER, add_client, add_factory, submit_job

PAIR = ("LibreOffice Writer", "7.4")
OTHER = ("LibreOffice Writer", "24.2")
OTHER_WRITER = "LibreOffice Writer|24.2|odt|pdf,png,odf"


@pytest.fixture(params=["redis", "amqp"])
def rt(request, make_runtime):  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("redis_broker_url" if request.param == "redis" else "amqp_broker_url")
    return make_runtime(broker_url=url)


def lose_broker_data(rt) -> None:  # type: ignore[no-untyped-def]
    """Redis: FLUSHDB (queues and the routing bindings go). RabbitMQ: delete the pairs' queues."""
    with rt.celery.pool.acquire(block=True) as conn:
        if conn.transport.driver_type == "redis":
            import redis

            r = redis.Redis.from_url(REDIS_URL)
            r.flushdb()
            r.close()
            return
        for pair in (PAIR, OTHER):
            conn.default_channel.queue_delete(pair_queue(*pair).name)


def reconcile(rt) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        pairs = admin.served_pairs(s, include_disabled=True)
        return maintenance.reconcile(s, rt.mirror, rt.now(), stale_after=timedelta(hours=1), known_pairs=pairs)


def backlog(rt) -> dict[tuple[str, str], int]:  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        return {pair: n for pair, (n, _) in maintenance.queued_by_pair(s).items()}


def test_mirror_is_whole_again_after_the_broker_lost_its_data(rt, caplog):
    add_factory(rt, workers=(WRITER, OTHER_WRITER))
    client = add_client(rt)
    for _ in range(5):
        submit_job(rt, client)
    for _ in range(3):
        submit_job(rt, client, version=OTHER[1])
    assert rt.mirror.queue_length(*PAIR) == 5 and rt.mirror.queue_length(*OTHER) == 3

    lose_broker_data(rt)
    submit_job(rt, client)  # published into a broker that forgot the routing: lost on the way
    assert backlog(rt) == {PAIR: 6, OTHER: 3}

    with caplog.at_level(logging.INFO, logger="convhub.mirror"):
        reconcile(rt)
        reconcile(rt)
    assert rt.mirror.queue_length(*PAIR) == 6 and rt.mirror.queue_length(*OTHER) == 3
    assert any("6 in the queue (verified)" in r.getMessage() for r in caplog.records)

    # Routing works again for every process: a new submit's message arrives, a claim takes it out.
    submit_job(rt, client)
    assert rt.mirror.queue_length(*PAIR) == 7
    with rt.db.read_session() as s:
        factory = rt.auth.factory(s, "factory-1", "factory-secret-1", rt.now())
    assert poll(rt.db, rt.now(), rt.policy, rt.mirror, factory) is not None
    assert sum(rt.mirror.queue_length(*p) for p in (PAIR, OTHER)) == sum(backlog(rt).values()) == 9


def test_a_rebuild_returns_the_length_it_read_back(rt):
    add_factory(rt)
    client = add_client(rt)
    ids = [submit_job(rt, client)[0] for _ in range(4)]
    lose_broker_data(rt)
    assert rt.mirror.rebuild(*PAIR, ids) == 4
    assert rt.mirror.queue_length(*PAIR) == 4


class _LosingMirror:
    """A mirror whose broker keeps only one message of a rebuild: reconciliation must report that."""

    def __init__(self) -> None:
        self.length = 0

    def queue_length(self, application: str, version: str) -> int:
        return self.length

    def trim(self, application, version, is_queued, limit) -> int:  # type: ignore[no-untyped-def]
        return 0

    def rebuild(self, application: str, version: str, job_ids: list[int]) -> int:
        self.length = min(1, len(job_ids))
        return self.length


def test_reconcile_reports_what_the_queue_holds_not_what_was_sent(runtime) -> None:  # type: ignore[no-untyped-def]
    client = add_client(runtime)
    for _ in range(3):
        submit_job(runtime, client)
    mirror = _LosingMirror()
    with runtime.db.session() as s:
        repaired = maintenance.reconcile(s, mirror, runtime.now(), stale_after=timedelta(hours=1))  # type: ignore[arg-type]
    assert repaired == {"LibreOffice Writer|7.4": 1}  # 3 sent, 1 verified
