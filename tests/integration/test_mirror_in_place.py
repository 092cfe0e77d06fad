"""On Redis and the embedded SQL broker a claim takes its job's message out where it is: other
messages keep their places (kombu would requeue them at the tail on both). Stale messages met on
the way are left to reconciliation: a claim is one broker round trip."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.services import admin, client_views, maintenance
from app.services.poll import poll
from tasks.celery_app import pair_queue
from tasks.mirror import WINDOW, envelope_job_id
from tests.conftest import add_client, add_factory, submit_job

PAIR = ("LibreOffice Writer", "7.4")


@pytest.fixture(params=["redis", "sqla"])
def rt(request, make_runtime, tmp_path):  # type: ignore[no-untyped-def]
    if request.param == "redis":
        return make_runtime(broker_url=request.getfixturevalue("redis_broker_url"))
    (tmp_path / "var").mkdir(exist_ok=True)
    return make_runtime(broker_url=f"sqla+sqlite:///{tmp_path / 'var' / 'broker.db'}")


def order(rt) -> list[int | None]:  # type: ignore[no-untyped-def]
    """Job ids in the pair's queue, head first, read without taking anything (after the removals
    the mirror owes: on Redis a claim's removal is done by the mirror's drain thread)."""
    assert rt.mirror.settle(30)
    name = pair_queue(*PAIR).name
    with rt.celery.pool.acquire(block=True) as conn:
        ch = conn.default_channel
        if conn.transport.driver_type == "redis":
            return [envelope_job_id(raw) for raw in reversed(ch.client.lrange(ch._q_for_pri(name, 0), 0, -1))]
        m = ch.message_cls
        rows = ch.session.query(m.payload).filter(m.queue_id == ch._get_or_create(name).id, m.visible.is_(True))
        ids = [envelope_job_id(raw) for (raw,) in rows.order_by(m.sent_at, m.id)]
        ch.session.commit()
        return ids


def republish(rt, ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    """Replace the queue's content with messages for these jobs, in this order (head first)."""
    with rt.celery.pool.acquire(block=True) as conn:
        pair_queue(*PAIR).bind(conn.default_channel).purge()
    for jid in ids:
        rt.mirror.publish(jid, *PAIR)


def test_claim_removes_its_message_by_value_and_leaves_the_others_in_place(rt):
    add_factory(rt)
    client = add_client(rt)
    a, b, c, d = (submit_job(rt, client)[0] for _ in range(4))
    with rt.db.session() as s:
        client_views.delete_one(s, rt.now(), client, c)  # c goes stale
    republish(rt, [b, c, a, d])  # commit order differed from submission order: a is not at the head
    with rt.db.read_session() as s:
        factory = rt.auth.factory(s, "factory-1", "factory-secret-1", rt.now())
    assert poll(rt.db, rt.now(), rt.policy, rt.mirror, factory).id == a  # oldest first, by the database
    assert order(rt) == [b, c, d]  # a's message out in one step; b, c and d in place, c stale
    assert poll(rt.db, rt.now(), rt.policy, rt.mirror, factory).id == b
    assert order(rt) == [c, d]  # c stays until reconciliation trims it (a claim never sorts out stale ones)
    with rt.db.session() as s:
        pairs = admin.served_pairs(s, include_disabled=True)
        maintenance.reconcile(s, rt.mirror, rt.now(), stale_after=timedelta(hours=1), known_pairs=pairs)
    assert order(rt) == [d]  # queue length == backlog after reconciliation


def test_a_message_beyond_the_window_stays_stale_until_reconciliation_trims_it(rt):
    add_factory(rt)
    client = add_client(rt)
    ids = [submit_job(rt, client)[0] for _ in range(WINDOW + 2)]
    oldest = ids[0]
    republish(rt, ids[1:] + [oldest])  # the oldest job's message at the very back
    with rt.db.read_session() as s:
        factory = rt.auth.factory(s, "factory-1", "factory-secret-1", rt.now())
    assert poll(rt.db, rt.now(), rt.policy, rt.mirror, factory).id == oldest
    assert order(rt) == ids[1:] + [oldest]  # looked at WINDOW live messages and moved none
    for jid in ids[1:]:  # every other job's message is at the head when its claim comes
        assert poll(rt.db, rt.now(), rt.policy, rt.mirror, factory).id == jid
    assert order(rt) == [oldest]  # stale, on an idle pair
    with rt.db.session() as s:
        pairs = admin.served_pairs(s, include_disabled=True)
        assert maintenance.reconcile(s, rt.mirror, rt.now(), stale_after=timedelta(hours=1), known_pairs=pairs) == {
            "LibreOffice Writer|7.4": -1
        }
    assert order(rt) == []
