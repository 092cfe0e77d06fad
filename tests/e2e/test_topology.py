"""The multi-process topology on real sockets: `convhub web` (granian, 2 workers), 2 Celery
workers, 1 beat, 8 factory processes (a fast fake converter speaking XML-RPC), N jobs submitted
over SOAP. Every job must end COMPLETE exactly once, and the counts over SOAP must agree with the
database. Runs on PostgreSQL + RabbitMQ, then PostgreSQL + Redis.

N is 200 in the normal suite; `CONVHUB_TOPOLOGY_JOBS=2000 make topology` for the full run.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from app.db.models import Job, Result
from app.domain.matching import queue_name
from app.domain.states import JobState
from tests.conftest import add_client, add_factory, free_port, wait_for
from tests.topokit import SOAP_PATH, Procs, envelope, local, process_env, soap_call, soap_response

JOBS = int(os.environ.get("CONVHUB_TOPOLOGY_JOBS", "200"))
FACTORIES = 8
CELERY_WORKERS = 2
WRITER = "LibreOffice Writer|7.4|odt|pdf,png,odf"
CLIENT, CLIENT_SECRET = "petshow", "topology-client-secret"

# A factory that converts instantly: poll, answer with dummy bytes in the requested format, repeat.
# It stops after the stop file appears and one more empty poll; it writes the GUIDs it finished.
FAKE_FACTORY = r"""
import json, sys, time, xmlrpc.client
url, name, secret, stop_file, out_file = sys.argv[1:6]
proxy = xmlrpc.client.ServerProxy(url.replace("://", f"://{name}:{secret}@", 1) + "/xmlrpc", allow_none=True)
done, empty, errors = [], 0, []
while True:
    try:
        job = proxy.jobs.poll(name)
    except Exception as exc:  # the server may still be starting
        errors.append(repr(exc)[:200]); time.sleep(0.2); continue
    if not job:
        empty += 1
        try:
            open(stop_file).close(); break
        except OSError:
            time.sleep(0.05); continue
    fmt = job["format"] or "pdf"
    body = xmlrpc.client.Binary(b"%PDF-1.4 fake result for " + job["job"].encode())
    try:
        proxy.jobs.finish(name, job["job"], fmt, body, job["lease"])
        done.append(job["job"])
    except xmlrpc.client.Fault as f:
        errors.append(f"finish {job['job']}: {f.faultCode} {f.faultString}")
json.dump({"done": done, "empty_polls": empty, "errors": errors[-20:]}, open(out_file, "w"))
"""


def _envelope(op: str, **fields: str) -> bytes:
    return envelope(CLIENT, CLIENT_SECRET, op, **fields)


def _soap(session: requests.Session, base: str, op: str, **fields: str) -> ET.Element:
    resp = soap_call(session, base, _envelope(op, **fields))
    assert resp.status_code == 200, resp.text[:500]
    status, out = soap_response(op, resp.content)
    assert status == "200", resp.text[:500]
    return out


_local = local


def _run_topology(tmp_path: Path, make_runtime, db_url: str, broker_url: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    rt = make_runtime(database_url=db_url, broker_url=broker_url)
    add_client(rt, CLIENT, CLIENT_SECRET)
    for i in range(1, FACTORIES + 1):
        add_factory(rt, name=f"topo-{i}", secret=f"topo-secret-{i}", workers=(WRITER,))
    rt.mirror.declare([("LibreOffice Writer", "7.4")])  # type: ignore[attr-defined]

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = process_env(
        tmp_path / "var", db_url, broker_url, base,
        CONVHUB_RECLAIM_INTERVAL_SECONDS="2", CONVHUB_RECONCILE_INTERVAL_SECONDS="5",
    )
    script = tmp_path / "fake_factory.py"
    script.write_text(FAKE_FACTORY)
    stop_file = tmp_path / "stop"
    procs = Procs(tmp_path, env)
    me = [sys.executable, "-m", "app.cli"]
    timings: dict[str, float] = {}
    try:
        procs.start("web", me + ["web", "--port", str(port), "--workers", "2", "--threads", "8"])
        for i in range(CELERY_WORKERS):
            procs.start(
                f"worker-{i}",
                me + ["worker", "--pool", "threads", "--concurrency", "2", "--hostname", f"topo-w{i}@%h"],
            )
        procs.start("beat", me + ["beat"])

        def web_up() -> bool:
            procs.check_alive()
            return requests.get(base + "/healthz", timeout=2).ok

        wait_for(
            web_up, 90, "web to come up", interval=0.2,
            ignore=(requests.RequestException,), details=lambda: procs.tail("web"),
        )
        for i in range(1, FACTORIES + 1):
            procs.start(
                f"factory-{i}",
                [
                    sys.executable,
                    str(script),
                    base,
                    f"topo-{i}",
                    f"topo-secret-{i}",
                    str(stop_file),
                    str(tmp_path / f"factory-{i}.json"),
                ],
                optional=True,
            )

        t0 = time.monotonic()
        with requests.Session() as s:
            up = _soap(
                s,
                base,
                "contentUpload",
                content=base64.b64encode(b"PK fake odt for the topology").decode(),
                filename="doc.odt",
            )
            ident = _local(up, "contentIdentifier")[0].text or ""

        def convert(_: int) -> int:
            with requests.Session() as s:
                out = _soap(
                    s,
                    base,
                    "contentConvert",
                    contentIdentifier=ident,
                    application="LibreOffice Writer",
                    version="7.4",
                    format="pdf",
                    # Every job converted by a factory (this test counts exactly-once delivery), not
                    # answered from the result cache: the 200 jobs share one upload.
                    noCache="true",
                )
                return int(_local(out, "jobId")[0].text or "0")

        with ThreadPoolExecutor(8) as pool:
            job_ids = list(pool.map(convert, range(JOBS)))
        timings["submit_s"] = time.monotonic() - t0
        assert len(set(job_ids)) == JOBS

        def complete() -> int:
            procs.check_alive()
            with rt.db.read_session() as s:
                return (
                    s.scalar(select(func.count()).select_from(Job).where(Job.state == int(JobState.COMPLETE)))
                    or 0
                )

        wait_for(
            lambda: complete() >= JOBS, max(60, JOBS / 10), f"{JOBS} jobs COMPLETE", interval=0.2,
            details=lambda: f"only {complete()}/{JOBS} COMPLETE\n{procs.tail('web')}",
        )
        timings["all_complete_s"] = time.monotonic() - t0
        stop_file.write_text("stop")
        for label, p in procs.items:
            if label.startswith("factory"):
                p.wait(timeout=30)

        # Exactly once: every job COMPLETE after one attempt, one result each, one finish each.
        with rt.db.read_session() as s:
            states = dict(s.execute(select(Job.state, func.count()).group_by(Job.state)).all())
            attempts = dict(s.execute(select(Job.attempts, func.count()).group_by(Job.attempts)).all())
            results = s.scalar(select(func.count(func.distinct(Result.job_id)))) or 0
            result_rows = s.scalar(select(func.count()).select_from(Result)) or 0
            guids = {g for (g,) in s.execute(select(Job.guid)).all()}
        assert states == {int(JobState.COMPLETE): JOBS}
        assert attempts == {1: JOBS}
        assert results == result_rows == JOBS
        finished: list[str] = []
        empty_polls = 0
        for i in range(1, FACTORIES + 1):
            report = json.loads((tmp_path / f"factory-{i}.json").read_text())
            assert report["errors"] == [] or all("Connection" in e for e in report["errors"]), report[
                "errors"
            ]
            finished += report["done"]
            empty_polls += report["empty_polls"]
        assert len(finished) == JOBS and set(finished) == guids
        busy = sum(
            1
            for i in range(1, FACTORIES + 1)
            if json.loads((tmp_path / f"factory-{i}.json").read_text())["done"]
        )
        assert busy >= 2  # the work was really shared

        # Results over SOAP through the web server (answered by the streaming layer): what the factory sent.
        with requests.Session() as s:
            for job_id in job_ids[:5]:
                res = _soap(s, base, "getContentConvertResult", jobId=str(job_id))
                with rt.db.read_session() as db:
                    guid = db.scalar(select(Job.guid).where(Job.id == job_id))
                body = b"".join(base64.b64decode(c.text or "") for c in _local(res, "content"))
                assert body == b"%PDF-1.4 fake result for " + (guid or "").encode()
            # A 3 MiB upload through the web server (spooled and stored by the streaming layer), intact.
            big = os.urandom(3 * 1024 * 1024)
            step = 1024 * 1024
            parts = "".join(f"<content>{base64.b64encode(big[i : i + step]).decode()}</content>" for i in range(0, len(big), step))
            up = s.post(
                base + SOAP_PATH,
                data=_envelope("contentUpload", filename="big.odt").replace(b"<filename>", parts.encode() + b"<filename>"),
                headers={"Content-Type": "text/xml; charset=utf-8"},
                timeout=60,
            )
            assert up.status_code == 200 and b"<status>200</status>" in up.content, up.text[:500]
            ident = up.content.split(b"<contentIdentifier>")[1].split(b"</contentIdentifier>")[0].decode()
            from app.db.blobs import read_blob
            from app.db.models import Content

            with rt.db.read_session() as db:
                assert read_blob(db, db.scalar(select(Content.blob_id).where(Content.identifier == ident))) == big

        # Counts over SOAP agree with the database.
        with requests.Session() as s:
            counts = _soap(s, base, "getContentConvertCounts")
        pairs = {
            int(_local(c, "jobStatus")[0].text or -1): int(_local(c, "count")[0].text or -1)
            for c in _local(counts, "contentConvertCount")
        }
        assert pairs == {int(JobState.COMPLETE): JOBS}

        metrics = requests.get(base + "/metrics", timeout=10).text
        assert (
            f'convhub_jobs{{application="LibreOffice Writer",state="COMPLETE",version="7.4"}} {float(JOBS)}'
            in metrics
        )
        # Every claimed job's message leaves its queue: at the claim, or (when another web process
        # held it at that moment) at the next reconciliation, which drops an idle pair's stale heads.
        timings["queue_left_at_end"] = float(rt.mirror.queue_length("LibreOffice Writer", "7.4") or 0)  # type: ignore[attr-defined]
        pair = ("LibreOffice Writer", "7.4")
        wait_for(lambda: rt.mirror.queue_length(*pair) == 0, timeout=20, what="the pair's queue to drain", interval=0.5)  # type: ignore[attr-defined]
        timings["queue_left"] = float(rt.mirror.queue_length(*pair) or 0)  # type: ignore[attr-defined]
        timings["empty_polls"] = float(empty_polls)
        timings["factories_busy"] = float(busy)
        timings["jobs_per_s"] = JOBS / timings["all_complete_s"]
    finally:
        procs.stop()
    print(
        f"\ntopology {broker_url.split(':')[0]} N={JOBS}: "
        + ", ".join(f"{k}={v:.2f}" for k, v in timings.items())
    )
    return timings


@pytest.mark.postgres
@pytest.mark.rabbitmq
def test_topology_postgres_rabbitmq(tmp_path, make_runtime, pg_url, amqp_broker_url) -> None:  # type: ignore[no-untyped-def]
    t = _run_topology(tmp_path, make_runtime, pg_url, amqp_broker_url)
    assert t["queue_left"] == 0  # every claimed job's message left its queue


@pytest.mark.postgres
@pytest.mark.redis
def test_topology_postgres_redis(tmp_path, make_runtime, pg_url, redis_broker_url) -> None:  # type: ignore[no-untyped-def]
    if "CONVHUB_TOPOLOGY_JOBS" not in os.environ and os.environ.get("CONVHUB_SOAK") != "1":
        # make test runs this topology under kills instead (tests/soak/test_kill.py, PostgreSQL + Redis)
        pytest.skip("make topology / make soak only; make test runs the kill soak on PostgreSQL + Redis")
    t = _run_topology(tmp_path, make_runtime, pg_url, redis_broker_url)
    assert t["queue_left"] == 0


def test_queue_name_of_the_topology_pair() -> None:
    assert queue_name("LibreOffice Writer", "7.4") == "convert.libreoffice-writer.7-4"
