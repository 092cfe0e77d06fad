"""One reconciliation at a time. Found by the loss soak (tests/soak/test_loss.py): after a RabbitMQ
restart two reconcile runs (beat's, piled up behind the outage) ran at once on the worker's two
threads; each purged the pair's queue and re-published the backlog, and the queue held 14 messages
for a backlog of 8 ("8 messages sent, 14 in the queue (verified)") until they were claimed."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.services import counters, maintenance
from tests.conftest import add_client, add_factory, submit_job


class CountingMirror:
    def __init__(self) -> None:
        self.probes = 0

    def queue_length(self, application: str, version: str) -> int:
        self.probes += 1
        return 0

    def rebuild(self, application: str, version: str, job_ids: list[int]) -> int:
        return len(job_ids)

    def publish(self, *a: object) -> None: ...

    def sweep_consumed(self) -> int:
        return 0


@pytest.mark.postgres
def test_a_reconciliation_while_another_runs_is_skipped(make_runtime, pg_url):
    rt = make_runtime(database_url=pg_url, broker=False)
    add_factory(rt)
    submit_job(rt, add_client(rt))
    mirror = CountingMirror()
    with rt.db.session() as running:
        assert counters.try_lock(running, maintenance.RECONCILE_LOCK)
        assert maintenance.reconcile_mirror(rt.db, mirror, rt.now(), stale_after=timedelta(hours=1)) == {}
        assert mirror.probes == 0  # the broker was not touched
    # The first one is over: the next run reconciles.
    assert maintenance.reconcile_mirror(rt.db, mirror, rt.now(), stale_after=timedelta(hours=1)) == {"LibreOffice Writer|7.4": 1}
    assert mirror.probes == 1


def test_on_sqlite_the_write_transaction_is_the_lock(runtime):
    with runtime.db.session() as s:
        assert counters.try_lock(s, maintenance.RECONCILE_LOCK)
