"""Reconciliation's probe after a broker restart. Found by the loss soak (tests/soak/test_loss.py):
after a RabbitMQ restart the first broker call of each process failed on a dead pooled connection,
the mirror's breaker opened for its 5 s back-off, and every reconciliation in that time was skipped
(failing its task with a traceback), so the queues stayed short longer than two reconcile intervals.

The probe (`queue_length`) asks the broker even while the breaker is open, retries once on a new
connection, and closes the breaker when the broker answers."""

from __future__ import annotations

import pytest

from tasks.mirror import BrokerDown
from tests.conftest import add_client, add_factory, submit_job
from tests.integration.test_mirror_broker_loss import PAIR, backlog, lose_broker_data, reconcile


@pytest.fixture(params=["redis", "amqp"])
def rt(request, make_runtime):  # type: ignore[no-untyped-def]
    url = request.getfixturevalue("redis_broker_url" if request.param == "redis" else "amqp_broker_url")
    return make_runtime(broker_url=url)


def test_reconciliation_repairs_the_mirror_while_the_breaker_is_open(rt):
    add_factory(rt)
    client = add_client(rt)
    for _ in range(3):
        submit_job(rt, client)
    lose_broker_data(rt)
    rt.mirror._tripped(ConnectionResetError(104, "Connection reset by peer"))  # as the restart left it
    with pytest.raises(BrokerDown):
        rt.mirror.publish(1, *PAIR)  # submits and polls skip the broker meanwhile (fast)

    assert reconcile(rt) == {"LibreOffice Writer|7.4": 3}
    assert rt.mirror.queue_length(*PAIR) == backlog(rt)[PAIR] == 3
    submit_job(rt, client)  # the breaker is closed again: publishing works at once
    assert rt.mirror.queue_length(*PAIR) == 4

