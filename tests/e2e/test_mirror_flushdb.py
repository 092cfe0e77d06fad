"""The running system repairs the Redis mirror after the broker lost its data: a real `convhub worker`
and `convhub beat` (reconcile every second) on Redis; FLUSHDB; the pair's queue holds the backlog
again, and a submit made after the repair is routed into it."""

from __future__ import annotations

import os
import signal
import subprocess

import redis

from tasks.mirror import envelope_job_id
from tests.conftest import REDIS_URL, wait_for
from tests.e2e.test_serve import CONVHUB, _cli, _env

QUEUE = "convert.libreoffice-writer.7-4"


def submit(env: dict[str, str], doc: str) -> None:
    # A different document each time: identical ones would follow the first (the result cache), unpublished.
    with open(doc, "ab") as fh:
        fh.write(b" and one more line")
    _cli(env, "jobs", "submit", doc, "--client", "petshow", "--application", "LibreOffice Writer", "--version", "7.4", "--format", "pdf")


def test_worker_and_beat_make_the_mirror_whole_after_a_flushdb(tmp_path, redis_broker_url):
    env = _env(tmp_path / "var")
    env.update(CONVHUB_BROKER_URL=redis_broker_url, CONVHUB_RECONCILE_INTERVAL_SECONDS="1")
    _cli(env, "db", "upgrade")
    _cli(env, "clients", "add", "petshow", "--secret", "Wf-long-enough-secret")
    _cli(env, "factories", "add", "f1", "--secret", "factory-secret-1", "--worker", "LibreOffice Writer|7.4|odt|pdf")
    doc = tmp_path / "doc.odt"
    doc.write_bytes(b"PK\x03\x04 not really an odt")
    for _ in range(3):
        submit(env, str(doc))
    r = redis.Redis.from_url(REDIS_URL)
    assert r.llen(QUEUE) == 3

    procs = []
    logs = [(tmp_path / f"{name}.log").open("w") for name in ("worker", "beat")]
    try:
        for args, log in zip((["worker", "--concurrency", "1"], ["beat"]), logs, strict=True):
            procs.append(subprocess.Popen(CONVHUB + args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        wait_for(lambda: b"_kombu.binding.convhub" in r.keys("_kombu.binding.*"), 60, "the worker's queue")

        r.flushdb()
        wait_for(lambda: r.llen(QUEUE) == 3, 60, "the mirror rebuilt from the database")
        submit(env, str(doc))  # routing works again for every process
        # (A reconcile running at the same moment may have published job 4's message too.)
        assert {envelope_job_id(raw) for raw in r.lrange(QUEUE, 0, -1)} == {1, 2, 3, 4}
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        for log in logs:
            log.close()
        r.close()
    text = (tmp_path / "worker.log").read_text()
    assert "3 in the queue (verified)" in text
