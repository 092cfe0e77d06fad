"""`convhub serve` keeps its children alive: kill -9 the Celery worker or the web server (granian's
master) and the supervisor restarts it while the rest keeps serving; SIGTERM still stops everything.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import free_port, wait_for
from tests.e2e.test_serve import CONVHUB, _env, _get


def children(pid: int) -> dict[int, str]:
    """Direct children of `pid`: pid -> command line (read from /proc)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    return out


def child(pid: int, needle: str) -> int | None:
    found = [p for p, cmd in children(pid).items() if needle in cmd]
    return found[0] if len(found) == 1 else None


@pytest.fixture
def served(tmp_path):  # type: ignore[no-untyped-def]
    env = _env(tmp_path / "var")
    port = free_port()
    log_path = tmp_path / "serve.log"
    log = log_path.open("w")
    proc = subprocess.Popen(CONVHUB + ["serve", "--port", str(port), "--factory", "off"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _get(base + "/healthz")[0] == 200, 60, "healthz")
        yield base, proc, log_path
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_a_killed_worker_and_a_killed_web_server_are_restarted(served):
    base, proc, log_path = served
    worker = wait_for(lambda: child(proc.pid, "app.cli worker"), 30, "the worker child")
    web = wait_for(lambda: child(proc.pid, "granian"), 30, "the web child")

    os.kill(worker, signal.SIGKILL)
    new_worker = wait_for(lambda: (p := child(proc.pid, "app.cli worker")) not in (None, worker) and p, 30, "a new worker")
    assert proc.poll() is None
    assert _get(base + "/healthz")[0] == 200  # the web server was never stopped
    assert child(proc.pid, "granian") == web

    os.kill(web, signal.SIGKILL)
    wait_for(lambda: (p := child(proc.pid, "granian")) not in (None, web) and p, 30, "a new web server")
    wait_for(lambda: _get(base + "/healthz")[0] == 200, 60, "healthz after the web restart")
    assert proc.poll() is None
    assert child(proc.pid, "app.cli worker") == new_worker  # the worker was left alone

    text = log_path.read_text()
    assert "worker killed by SIGKILL; restarting" in text and "web killed by SIGKILL; restarting" in text
    assert "stopping everything" not in text

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=40) == 0
    assert _get(base + "/healthz")[0] == 0  # every child is gone
