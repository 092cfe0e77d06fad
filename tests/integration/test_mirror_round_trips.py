"""A claim's mirror removal costs at most one broker round trip and never walks the queue, on every
broker: counted as Redis commands (a wrapped client), AMQP methods sent (a wrapped channel) and SQL
statements run on the embedded broker's engine (an event listener). On RabbitMQ and Redis the claim
sends nothing: it owes the removal to the mirror's drain thread, which takes the owed messages off
in one pass per batch (`settle` waits for it). Timings are never asserted."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import amqp
import pytest
from amqp import spec
from sqlalchemy import event

from tasks.celery_app import pair_queue
from tasks.mirror import WINDOW

PAIR = ("LibreOffice Writer", "7.4")
QUEUED = 2 * WINDOW + 20  # messages in the queue: more than a claim may look at


@pytest.fixture(params=["redis", "amqp", "sqla"])
def rt(request, make_runtime, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "redis":
        return make_runtime(broker_url=request.getfixturevalue("redis_broker_url"))
    if request.param == "amqp":
        return make_runtime(broker_url=request.getfixturevalue("amqp_broker_url"))
    (tmp_path / "var").mkdir(exist_ok=True)
    return make_runtime(broker_url=f"sqla+sqlite:///{tmp_path / 'var' / 'broker.db'}")


@contextmanager
def broker_calls(rt, monkeypatch) -> Iterator[list[str]]:  # type: ignore[no-untyped-def]
    """What the mirror sends to the broker inside the block, one name per call: Redis command
    names; AMQP method names, with a `?` suffix for the ones that wait for a reply (round trips);
    SQL statements' first words on the embedded broker's engine."""
    calls: list[str] = []
    kind = rt.settings.broker_kind
    if kind == "redis":
        import redis

        real = redis.Redis.execute_command

        def counted(self, *args, **kw):  # type: ignore[no-untyped-def]
            calls.append(str(args[0]).upper())
            return real(self, *args, **kw)

        with monkeypatch.context() as m:
            m.setattr(redis.Redis, "execute_command", counted)
            yield calls
        return
    if kind == "amqp":
        send = amqp.Channel.send_method
        names = {spec.Basic.Get: "basic.get", spec.Basic.Ack: "basic.ack", spec.Basic.Reject: "basic.reject",
                 spec.Basic.Qos: "basic.qos", spec.Basic.Consume: "basic.consume", spec.Basic.Cancel: "basic.cancel"}

        def sent(self, sig, format=None, args=None, content=None, wait=None, callback=None, returns_tuple=False):  # type: ignore[no-untyped-def]
            calls.append(names.get(sig, str(sig)) + ("?" if wait else ""))
            return send(self, sig, format, args, content, wait, callback, returns_tuple)

        with monkeypatch.context() as m:
            m.setattr(amqp.Channel, "send_method", sent)
            yield calls
        return
    with rt.celery.pool.acquire(block=True) as conn:
        engine = conn.default_channel.session.bind

    def statement(conn, cursor, sql, params, context, executemany):  # type: ignore[no-untyped-def]
        calls.append(" ".join(sql.split()[:2]).upper())

    event.listen(engine, "before_cursor_execute", statement)
    try:
        yield calls
    finally:
        event.remove(engine, "before_cursor_execute", statement)


def fill(rt, job_ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    for jid in job_ids:
        rt.mirror.publish(jid, *PAIR)
    assert rt.mirror.queue_length(*PAIR) == len(job_ids)


def remove(rt, job_id: int, queued_among: Callable[[Sequence[int]], set[int]]) -> None:  # type: ignore[no-untyped-def]
    """A claim's removal; on RabbitMQ, until the drain has done it."""
    rt.mirror.remove(job_id, *PAIR, queued_among)
    assert rt.mirror.settle(30)


def one_round_trip(rt, calls: list[str], claims: int = 1) -> bool:  # type: ignore[no-untyped-def]
    kind = rt.settings.broker_kind
    if kind == "redis":
        return 1 <= len(calls) <= claims and set(calls) == {"EVALSHA"}  # the drain's take script, one per pass
    if kind == "amqp":
        # The drain's passes: qos, consume, cancel (acks and rejects await no reply); at most one
        # pass per claim, usually one for a batch; never a get.
        trips = [c for c in calls if c.endswith("?")]
        passes = trips.count("basic.consume?")
        return 1 <= passes <= claims and trips == ["basic.qos?", "basic.consume?", "basic.cancel?"] * passes
    # The drain's pass: the head window's read and one DELETE by id, one write transaction per pass.
    # (no DELETE when none of the owed messages is in the window).
    trips = " ".join(c for c in calls if not c.startswith(("BEGIN", "COMMIT")))
    passes = trips.count("SELECT KOMBU_MESSAGE.ID,")
    return 1 <= passes <= claims and trips.replace("SELECT KOMBU_MESSAGE.ID, DELETE FROM", "").replace("SELECT KOMBU_MESSAGE.ID,", "").strip() == ""


def live(ids: Sequence[int]) -> set[int]:
    return set(ids)


def counting(seen: list[int], stale: Sequence[int] = ()) -> Callable[[Sequence[int]], set[int]]:
    def queued_among(ids: Sequence[int]) -> set[int]:
        seen.extend(ids)
        return set(ids) - set(stale)

    return queued_among


def test_taking_the_head_message_is_one_round_trip(rt, monkeypatch):
    ids = list(range(1, QUEUED + 1))
    fill(rt, ids)
    remove(rt, ids[-1], live)  # warm: queue declared, script loaded (beyond the window: no effect)
    for jid in ids[:3]:
        looked_up: list[int] = []
        with broker_calls(rt, monkeypatch) as calls:
            remove(rt, jid, counting(looked_up, stale=[jid]))
        assert one_round_trip(rt, calls), calls
        if rt.settings.broker_kind == "amqp":
            assert looked_up == [jid]  # the drain's one query for the messages it took
        else:
            assert looked_up == []  # its own message at the head: no database look-up either
    assert rt.mirror.queue_length(*PAIR) == QUEUED - 3


def test_rabbitmq_claims_send_nothing_and_one_pass_takes_a_batch(make_runtime, request, monkeypatch):
    """RabbitMQ: the claims themselves send nothing to the broker; the drain takes the messages they
    owe in passes of three round trips and one database query each, however many claims a pass
    serves, and drops what is stale among them with one multiple ack."""
    rt = make_runtime(broker_url=request.getfixturevalue("amqp_broker_url"))
    ids = list(range(1, 41))
    fill(rt, ids)
    remove(rt, 0, live)  # warm: the queue declared (the live head handed back)
    looked_up: list[int] = []
    with broker_calls(rt, monkeypatch) as calls:
        for jid in ids[:20]:
            rt.mirror.remove(jid, *PAIR, counting(looked_up, stale=ids[:20]))
        sent_by_claims = list(calls)
        assert rt.mirror.settle(30)
    assert [c for c in sent_by_claims if c.endswith("?")] in ([], ["basic.qos?"], ["basic.qos?", "basic.consume?"])  # the drain may have begun
    assert one_round_trip(rt, calls, claims=20), calls
    assert sorted(looked_up) == ids[:20]
    assert "basic.reject" not in calls
    assert rt.mirror.queue_length(*PAIR) == 20


def test_a_message_deep_in_the_queue_costs_the_same_and_nothing_is_walked(rt, monkeypatch):
    ids = list(range(1, QUEUED + 1))
    fill(rt, ids)
    remove(rt, 0, live)  # warm (no such message)
    with broker_calls(rt, monkeypatch) as calls:
        remove(rt, ids[-1], live)  # behind QUEUED - 1 live messages
    assert one_round_trip(rt, calls), calls
    if rt.settings.broker_kind == "amqp":
        assert [c for c in calls if not c.endswith("?")] == ["basic.reject"]  # the live head handed back, in its place
    assert rt.mirror.queue_length(*PAIR) == QUEUED  # left stale for reconciliation: nothing moved
    with rt.celery.pool.acquire(block=True) as conn:
        head = pair_queue(*PAIR).bind(conn.default_channel).get(no_ack=False, accept=["json"])
        assert head.payload[0] == [ids[0]]  # the order is kept
        head.requeue()


def test_a_stale_message_ahead_costs_nothing_more(rt, monkeypatch):
    """A stale message ahead of the claim's own (its job deleted) is not sorted out by the claim: no
    database look-up, no second round trip. RabbitMQ's one get drops it (it is the head) and leaves
    the claim's own message, now stale; Redis and SQL take the claim's own. One stale message is
    left either way, for reconciliation's trim."""
    fill(rt, [1, 2, 3])
    remove(rt, 0, live)  # warm (on RabbitMQ: the live head 1 is handed back)
    looked_up: list[int] = []
    with broker_calls(rt, monkeypatch) as calls:
        remove(rt, 2, counting(looked_up, stale=[1, 2]))
    assert one_round_trip(rt, calls), calls
    if rt.settings.broker_kind == "amqp":
        assert [c for c in calls if not c.endswith("?")] == ["basic.ack"] and looked_up == [1]  # the head's job, the only look-up
    else:
        assert looked_up == []
    assert rt.mirror.queue_length(*PAIR) == 2


def test_the_sql_brokers_head_read_walks_the_index_and_sorts_nothing(tmp_path):
    """kombu's table has an index on `visible`; on a broker database without statistics SQLite
    would use it and sort the whole queue for every pass. The head window's read must walk the
    (timestamp, id) index from the head instead (stopping after the window), whatever the queue's
    length."""
    from kombu import Connection

    from tasks.mirror import _sql_head

    with Connection(f"sqla+sqlite:///{tmp_path / 'broker.db'}") as conn:
        channel = conn.default_channel
        message, queue = channel.message_cls.__table__, channel.queue_cls.__table__
        channel._get_or_create("q")
        channel.session.commit()
        engine = channel.session.bind
        with engine.begin() as c:
            c.execute(message.insert(), [{"payload": f'{{"argsrepr": "[{i}]"}}', "queue_id": 1, "visible": True, "version": 1} for i in range(2000)])
        stmt = _sql_head(message, queue).compile(engine)
        params = stmt.construct_params({"queue": "q", "window": WINDOW})
        with engine.connect() as c:
            plan = [row[3] for row in c.exec_driver_sql("EXPLAIN QUERY PLAN " + str(stmt), tuple(params[k] for k in stmt.positiontup or ()))]
            assert not any("TEMP B-TREE" in step for step in plan), plan
            assert any("INDEX ix_kombu_message_timestamp" in step for step in plan), plan
            rows = c.execute(_sql_head(message, queue), {"queue": "q", "window": 7}).all()
            assert [r.payload for r in rows] == [f'{{"argsrepr": "[{i}]"}}' for i in range(7)]


def test_the_embedded_brokers_removals_queue_on_the_files_lock(make_runtime, tmp_path, monkeypatch):
    """One process's removals wait for each other on a lock of the broker file's own, not on
    SQLite's busy handler (which polls with sleeps): each removal holds it from BEGIN to COMMIT."""
    from tasks import mirror as mirror_module

    (tmp_path / "var").mkdir(exist_ok=True)
    rt = make_runtime(broker_url=f"sqla+sqlite:///{tmp_path / 'var' / 'broker.db'}")
    ids = [1, 2, 3]
    fill(rt, ids)
    held: list[str] = []

    class Recording:
        def __enter__(self) -> None:
            held.append("enter")

        def __exit__(self, *exc: object) -> None:
            held.append("exit")

    monkeypatch.setattr(mirror_module, "_sqlite_writer", lambda url: Recording())
    with broker_calls(rt, monkeypatch) as calls:
        remove(rt, ids[0], live)
    assert held == ["enter", "exit"] and calls, calls
    assert rt.mirror.queue_length(*PAIR) == 2
