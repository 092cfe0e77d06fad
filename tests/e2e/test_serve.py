"""`convhub serve` as a new user runs it: a subprocess on a free port, driven over HTTP and the CLI.

The embedded default (SQLite + kombu's SQLite transport) with no other service: health answers,
`convhub jobs submit` queues a job and its message, a poll leases it, and the beat started by
`serve` puts the expired lease back in QUEUED with its attempt counted. Then SIGTERM stops all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for

CONVHUB = [sys.executable, "-m", "app.cli"]
LEASE = 5
RECLAIM = 1


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVHUB_")}
    env.update(
        CONVHUB_DATA_DIR=str(data),
        CONVHUB_LEASE_SECONDS=str(LEASE),
        CONVHUB_RECLAIM_INTERVAL_SECONDS=str(RECLAIM),
        CONVHUB_AUTH_CACHE_SECONDS="0",
    )
    return env


def _cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(CONVHUB + list(args), env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout




def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except OSError:
        return 0, {}


@pytest.fixture
def served(tmp_path):  # type: ignore[no-untyped-def]
    env = _env(tmp_path / "var")
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(CONVHUB + ["serve", "--port", str(port), "--factory", "off"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(base + "/healthz")[0] == 200, 60, "healthz")
        yield base, env, proc, tmp_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_serve_health_submit_lease_expiry_and_clean_stop(served):
    base, env, proc, tmp = served
    status, body = _get(base + "/healthz")
    assert status == 200 and body["database"] == "ok" and body["broker"] == "ok"

    _cli(env, "clients", "add", "petshow", "--secret", "Wf-long-enough-secret")
    out = _cli(env, "factories", "add", "f1", "--secret", "factory-secret-1", "--worker", "LibreOffice Writer|7.4|odt|pdf,png,odf")
    assert "added" in out
    doc = tmp / "doc.odt"
    doc.write_bytes(b"PK\x03\x04 not really an odt")
    out = _cli(env, "jobs", "submit", str(doc), "--client", "petshow", "--application", "LibreOffice Writer", "--version", "7.4", "--format", "pdf")
    assert "QUEUED on convert.libreoffice-writer.7-4" in out
    job_id = out.split()[1]

    # The message is in the right Celery queue of the embedded broker.
    from app.config import load_settings
    from app.runtime import build_runtime
    from tests.conftest import close_runtime

    rt = build_runtime(load_settings(env))
    try:
        assert rt.mirror.queue_length("LibreOffice Writer", "7.4") == 1
        from app.services.poll import poll

        with rt.db.read_session() as s:
            factory = rt.auth.factory(s, "f1", "factory-secret-1", rt.now())
        claimed = poll(rt.db, rt.now(), rt.policy, rt.mirror, factory)
        assert claimed is not None and str(claimed.id) == job_id
        assert rt.mirror.queue_length("LibreOffice Writer", "7.4") == 0
        # Read in-process: the 5 s lease may be over before a CLI process has started on a loaded machine.
        from app.db.models import Job
        from app.domain.states import JobState

        with rt.db.read_session() as s:
            assert s.get(Job, int(job_id)).state == JobState.REQUESTED_FOR_PROCESSING  # type: ignore[union-attr]
    finally:
        close_runtime(rt)
    assert json.loads(_cli(env, "jobs", "show", job_id))["state"] in ("REQUESTED_FOR_PROCESSING", "QUEUED")

    # No one finishes: beat's reclaim puts it back within the lease plus one beat interval (+ slack).
    def back() -> dict | None:
        info = json.loads(_cli(env, "jobs", "show", job_id))
        return info if info["state"] == "QUEUED" else None

    info = wait_for(back, LEASE + RECLAIM + 60, "reclaim")  # generous: parallel test workers load the machine
    assert info["attempts"] == 1 and "lease expired" in info["failureReason"]

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=40) == 0
    # every child is gone: nothing listens any more
    assert _get(base + "/healthz")[0] == 0


def test_cli_errors_are_one_line(tmp_path):
    env = _env(tmp_path / "var")
    _cli(env, "db", "upgrade")
    for args, needle in [
        (["jobs", "show", "12345"], "no job"),
        (["factories", "add", "x", "--worker", "bad"], "APPLICATION|VERSION|DOCTYPES|FORMATS"),
        (["jobs", "submit", "/nonexistent.odt", "--client", "c", "--application", "A", "--version", "1"], "no such file"),
    ]:
        out = subprocess.run(CONVHUB + args, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode != 0
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0] and "Traceback" not in out.stderr
    bad = dict(env, CONVHUB_LEASE_SECONDS="soon")
    out = subprocess.run(CONVHUB + ["jobs", "list"], env=bad, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "CONVHUB_LEASE_SECONDS" in out.stderr
