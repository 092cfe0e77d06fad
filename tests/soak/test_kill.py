"""The process-kill soak (tests/soak/harness.py) on PostgreSQL + RabbitMQ, PostgreSQL + Redis and the
embedded default (SQLite + the SQLite broker).

Short form (the default, in `make test`): 300 jobs, one pass of every kill kind, on PostgreSQL +
Redis (the other two configurations run in the full form only, to keep `make test` short). Full form (CONVHUB_SOAK=1, `make soak`): 5,000 jobs
per configuration with the kill cycle repeated, on all three. CONVHUB_SOAK_JOBS=N changes N.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.soak.harness import Soak, SoakConfig

FULL = os.environ.get("CONVHUB_SOAK", "") == "1"
SHAPE: dict[str, Any] = (
    dict(jobs=5000, cycles=5, serve_kills=6, submit_seconds=150.0, lease_seconds=10, gap_seconds=2.0, large_every=50)
    if FULL
    else dict(jobs=300, cycles=1, serve_kills=1, submit_seconds=15.0, lease_seconds=10, gap_seconds=0.5, large_every=25)
)
if os.environ.get("CONVHUB_SOAK_JOBS"):  # a shorter or longer run of the same shape (submission pace kept)
    _jobs = int(os.environ["CONVHUB_SOAK_JOBS"])
    SHAPE["submit_seconds"] = SHAPE["submit_seconds"] * _jobs / SHAPE["jobs"]
    SHAPE["jobs"] = _jobs


def _check(summary: dict) -> None:  # type: ignore[type-arg]
    assert summary["submit_errors"] == [] and summary["submitted"] == summary["jobs"], summary
    assert summary["lost"] == 0, summary
    assert summary["duplicated"] == 0, summary
    assert summary["stale"] == 0, summary
    assert summary["overlapping_leases"] == 0, summary
    assert summary["wrong_results"] == 0, summary
    assert summary["tracebacks"] == 0, summary
    assert summary["secret_leaks"] == {}, summary
    # Every job COMPLETE, but for a document the kills got quarantined (see Soak.check; counted).
    q = summary["quarantined_by_kills"]
    assert summary["states"] == {"COMPLETE": summary["jobs"] - q, **({"FAILED": q} if q else {})}, summary
    # Every kind of kill really happened (each restart too).
    assert set(summary["kills"]) == {"web-worker-poll", "web-worker-finish", "web-master", "celery-worker", "beat",
                                     "factory", "all-split", "serve-group"}, summary
    assert summary["restarts"].get("web", 0) >= 1 and summary["restarts"].get("serve", 0) >= 1, summary


@pytest.mark.timeout(900 if FULL else 400)
@pytest.mark.postgres
@pytest.mark.rabbitmq
@pytest.mark.skipif(not FULL, reason="full form only (CONVHUB_SOAK=1, make soak)")
def test_soak_kill_postgres_rabbitmq(tmp_path, make_runtime, pg_url, amqp_broker_url) -> None:  # type: ignore[no-untyped-def]
    rt = make_runtime(database_url=pg_url, broker_url=amqp_broker_url)
    _check(Soak(tmp_path, rt, SoakConfig("pg-rabbitmq", pg_url, amqp_broker_url, **SHAPE)).run())


@pytest.mark.timeout(900 if FULL else 400)
@pytest.mark.postgres
@pytest.mark.redis
def test_soak_kill_postgres_redis(tmp_path, make_runtime, pg_url, redis_broker_url) -> None:  # type: ignore[no-untyped-def]
    rt = make_runtime(database_url=pg_url, broker_url=redis_broker_url)
    _check(Soak(tmp_path, rt, SoakConfig("pg-redis", pg_url, redis_broker_url, **SHAPE)).run())


@pytest.mark.timeout(900 if FULL else 400)
@pytest.mark.skipif(not FULL, reason="full form only (CONVHUB_SOAK=1, make soak)")
def test_soak_kill_embedded(tmp_path, make_runtime) -> None:  # type: ignore[no-untyped-def]
    rt = make_runtime()
    s = rt.settings
    _check(Soak(tmp_path, rt, SoakConfig("embedded", s.database_url, s.broker_url, **SHAPE)).run())
