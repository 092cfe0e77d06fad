"""`convhub flower` against real brokers with a server worker running: every per-pair queue is
visible in Flower's API with the right length, and beat tasks show in its task list.

Flower hides queues that no known worker consumes (the server worker consumes only `convhub`),
and on RabbitMQ it needs the management API: both are handled by tasks/flower.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from app.domain.matching import queue_name
from tasks.flower import broker_api_url, flower_argv
from tests.conftest import add_client, add_factory, free_port, port_open, require, submit_job, wait_for
from tests.integration.ops.conftest import OPERATOR, poll_once

ROOT = Path(__file__).resolve().parents[3]
WRITER = "LibreOffice Writer|7.4|odt|pdf,png,odf"
CALC = "LibreOffice Calc|7.4|ods|pdf"
IMPRESS = "LibreOffice Impress|7.4|odp|pdf"


def _env(tmp_path: Path, db_url: str, broker_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVHUB_", "FLOWER_"))}
    env.update(
        CONVHUB_DATA_DIR=str(tmp_path / "var"),
        CONVHUB_DATABASE_URL=db_url,
        CONVHUB_BROKER_URL=broker_url,
        CONVHUB_OPERATOR_USER=OPERATOR[0],
        CONVHUB_OPERATOR_PASSWORD=OPERATOR[1],
        PYTHONPATH=str(ROOT),
    )
    return env


def _spawn(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    fh = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", *args], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT
    )


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _tails(logs: list[Path]) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())


def _until(fn, timeout: float, what: str, logs: list[Path]):  # type: ignore[no-untyped-def]
    """`wait_for` with a server that may still be starting, and the logs' tails on a timeout."""
    return wait_for(
        fn, timeout, what, interval=0.25,
        ignore=(requests.RequestException, ValueError), details=lambda: _tails(logs),
    )


def _run_flower_check(tmp_path: Path, make_runtime, db_url: str, broker_url: str) -> None:  # type: ignore[no-untyped-def]
    rt = make_runtime(database_url=db_url, broker_url=broker_url)
    add_factory(rt, name="lo-1", workers=(WRITER, CALC))
    add_factory(rt, name="lo-2", secret="factory-secret-2", workers=(IMPRESS,))
    cid = add_client(rt)
    for _ in range(3):
        submit_job(rt, cid)
    submit_job(rt, cid, filename="sheet.ods", application="LibreOffice Calc", version="7.4")
    claimed = poll_once(rt, name="lo-1")  # takes the oldest Writer job off its queue
    assert claimed is not None and claimed.application == "LibreOffice Writer"

    env = _env(tmp_path, db_url, broker_url)
    port = free_port()
    hostname = f"ops-test-{uuid.uuid4().hex[:6]}@%h"
    logs = [tmp_path / "worker.log", tmp_path / "flower.log"]
    procs = [
        _spawn(["worker", "--pool", "solo", "--concurrency", "1", "--hostname", hostname], env, logs[0]),
        _spawn(["flower", "--port", str(port)], env, logs[1]),
    ]
    base = f"http://127.0.0.1:{port}"
    auth = OPERATOR
    try:
        # Flower's API is behind the operator's credentials (no FLOWER_UNAUTHENTICATED_API).
        _until(lambda: requests.get(f"{base}/healthcheck", timeout=2).ok, 30, "flower to listen", logs)
        assert requests.get(f"{base}/api/queues/length", timeout=5).status_code == 401
        # Wait until Flower knows the worker: from then on it would hide unconsumed queues.
        worker_name = hostname.replace("%h", "")
        _until(
            lambda: any(
                k.startswith(worker_name)
                for k in requests.get(
                    f"{base}/api/workers", params={"refresh": 1}, auth=auth, timeout=10
                ).json()
            ),
            40,
            "flower to see the worker",
            logs,
        )

        def lengths() -> dict[str, int] | None:
            body = requests.get(f"{base}/api/queues/length", auth=auth, timeout=10).json()
            # RabbitMQ's management API has no "messages" for a queue until its first statistics
            # round (collect_statistics_interval, 5 s by default): not ready yet.
            got = {q["name"]: int(q["messages"]) for q in body["active_queues"] if "messages" in q}
            # The same holds for the `convhub` queue the worker consumes: wait for it too.
            return got if want.items() <= got.items() and "convhub" in got else None

        want = {
            queue_name("LibreOffice Writer", "7.4"): 2,
            queue_name("LibreOffice Calc", "7.4"): 1,
            queue_name("LibreOffice Impress", "7.4"): 0,  # served, nothing submitted: still listed
        }
        got = _until(lengths, 30, f"per-pair queues {want} in /api/queues/length", logs)
        assert "convhub" in got

        # A beat task run by the worker shows in Flower's task list (events).
        rt.celery.send_task("convhub.reclaim", queue="convhub", retry=False)

        def reclaim_seen() -> bool:
            tasks = requests.get(f"{base}/api/tasks", auth=auth, timeout=10).json()
            return any(
                t.get("name") == "convhub.reclaim" and t.get("state") == "SUCCESS" for t in tasks.values()
            )

        _until(reclaim_seen, 20, "convhub.reclaim in /api/tasks", logs)
    finally:
        _stop(procs)


@pytest.mark.redis
@pytest.mark.postgres
def test_flower_shows_per_pair_queues_on_redis(tmp_path, make_runtime, pg_url, redis_broker_url) -> None:  # type: ignore[no-untyped-def]
    _run_flower_check(tmp_path, make_runtime, pg_url, redis_broker_url)


@pytest.mark.rabbitmq
@pytest.mark.postgres
def test_flower_shows_per_pair_queues_on_rabbitmq(tmp_path, make_runtime, pg_url, amqp_broker_url) -> None:  # type: ignore[no-untyped-def]
    require(
        "RabbitMQ management API",
        port_open("127.0.0.1", 15672),
        "run scripts/enable-rabbitmq-management.sh (rabbitmq-plugins enable rabbitmq_management)",
    )
    _run_flower_check(tmp_path, make_runtime, pg_url, amqp_broker_url)


def test_flower_argv_per_broker() -> None:
    from app.config import Settings

    amqp = Settings(
        broker_url="amqp://conv%40hub:p%3Ass@rabbit.internal:5672/prod",
        operator_password="pw",
        database_url="sqlite:///x",
    )
    argv = flower_argv(amqp, port=5556, address="0.0.0.0")
    assert "--port=5556" in argv and "--address=0.0.0.0" in argv and "--basic-auth=admin:pw" in argv
    assert "--broker-api=http://conv%40hub:p%3Ass@rabbit.internal:15672/api/" in argv
    assert (
        broker_api_url(Settings(broker_url="amqps://u:p@h/v", database_url="sqlite:///x"))
        == "https://u:p@h:15671/api/"
    )
    redis = Settings(broker_url="redis://127.0.0.1:6379/0", database_url="sqlite:///x")
    assert broker_api_url(redis) is None
    assert not any(a.startswith(("--broker-api", "--basic-auth")) for a in flower_argv(redis))
