"""`convhub web` (granian) with 2 worker processes: counters add up across workers (Prometheus
multiprocess mode), the database gauges are reported once, and the request log goes to stderr."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from app.web.serving import metrics_dir
from tests.conftest import add_client, add_factory, free_port, sqlite_db, submit_job, wait_for
from tests.integration.ops.test_ops_flower import ROOT, _env, _stop, _until


def _samples(text: str) -> dict[str, dict[tuple, float]]:
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = tuple(sorted(s.labels.items()))
            assert key not in out.setdefault(s.name, {}), f"duplicate sample {s.name}{s.labels}"
            out[s.name][key] = s.value
    return out


def test_metrics_add_up_across_web_workers(tmp_path: Path, make_runtime) -> None:  # type: ignore[no-untyped-def]
    db_url = sqlite_db(tmp_path)
    broker_url = f"sqla+sqlite:///{tmp_path / 'broker.db'}"
    rt = make_runtime(database_url=db_url, broker_url=broker_url)
    add_factory(rt)
    submit_job(rt, add_client(rt))

    env = _env(tmp_path, db_url, broker_url)
    env["CONVHUB_LOG_FORMAT"] = "json"
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    port = free_port()
    log = tmp_path / "web.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "web", "--port", str(port), "--workers", "2", "--threads", "2"],
            cwd=ROOT,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        # Waiting on /metrics, not /healthz: a start-up probe that times out on the client may still be
        # counted by the server, so the healthz count below is exactly the 40 requests sent.
        _until(lambda: requests.get(f"{base}/metrics", timeout=2).ok, 30, "the web server to serve", [log])
        served = 0
        mp = metrics_dir(tmp_path / "var", port)

        def worker_pids() -> set[str]:
            return {p.stem.rsplit("_", 1)[-1] for p in mp.glob("counter_*.db")}

        # A new connection each, spread over both workers; on a loaded machine the second worker
        # may start late, so send until both have answered (at least 40 requests).
        deadline = time.monotonic() + 60
        while served < 40 or (len(worker_pids()) < 2 and time.monotonic() < deadline):
            with requests.Session() as s:
                assert s.get(f"{base}/healthz", timeout=5).status_code == 200
            served += 1
        assert len(worker_pids()) >= 2, (
            f"expected files of both workers in {mp}: {sorted(p.name for p in mp.iterdir())}"
        )

        def healthz_total() -> float:
            m = _samples(requests.get(f"{base}/metrics", timeout=5).text)
            return sum(v for k, v in m["convhub_http_requests_total"].items() if ("endpoint", "healthz") in k)

        # The count is written after each response is sent: allow the last one a moment.
        wait_for(lambda: healthz_total() >= served, 5, f"{served} healthz requests counted", interval=0.1)
        for _ in range(6):  # whichever worker answers the scrape reports the same sums
            assert healthz_total() == served
            m = _samples(requests.get(f"{base}/metrics", timeout=5).text)
            assert (
                m["convhub_jobs"][
                    (("application", "LibreOffice Writer"), ("state", "QUEUED"), ("version", "7.4"))
                ]
                == 1
            )
            assert m["convhub_metrics_database_up"][()] == 1
        assert requests.get(f"{base}/ops/data.json", timeout=5).status_code == 401
    finally:
        _stop([proc])
    text = log.read_text(errors="replace")
    assert '"http_path": "/metrics"' not in text  # scrapes and health checks log at DEBUG only
    line = next(json.loads(x) for x in text.splitlines() if '"http_path": "/ops/data.json"' in x)
    assert line["logger"] == "convhub.http" and line["http_status"] == 401 and line["http_method"] == "GET"
    assert line["duration_ms"] >= 0 and line["actor"] == "-"
