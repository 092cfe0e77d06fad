"""`convhub web` (granian) as an operator runs it: a killed worker is respawned while the other keeps
serving; a master killed with SIGKILL takes its workers with it, so a new `convhub web` binds the same
port and serves; two servers on one host (different ports and data directories) do not interfere."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from app.web.serving import metrics_dir
from tests.conftest import free_port, wait_for
from tests.e2e.test_serve import CONVHUB, _env, _get
from tests.e2e.test_serve_supervisor import children


def _start(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:  # type: ignore[type-arg]
    with log.open("a") as fh:
        return subprocess.Popen(CONVHUB + ["web", "--port", str(port), "--workers", "2", "--threads", "2"], env=env,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and " Z " not in Path(f"/proc/{pid}/stat").read_text()


def _workers(master: int) -> set[int]:
    return {p for p, cmd in children(master).items() if "granian" in cmd}


def test_worker_respawn_master_kill_and_restart_on_the_same_port(tmp_path):
    env = _env(tmp_path / "var")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "web.log"
    proc = _start(env, port, log)
    second = None
    try:
        wait_for(lambda: _get(base + "/healthz")[0] == 200, 90, "healthz")
        def two(without: int = 0) -> set[int] | None:
            w = _workers(proc.pid)
            return w if len(w) == 2 and without not in w else None

        workers = wait_for(two, 30, "two workers")

        victim = sorted(workers)[0]
        os.kill(victim, signal.SIGKILL)
        respawned = wait_for(lambda: two(victim), 30, "a respawned worker")
        # (a request may wait for the new worker while it loads the app: the client's 5 s can pass)
        wait_for(lambda: _get(base + "/healthz")[0] == 200, 30, "healthz after the respawn")
        assert proc.poll() is None

        os.kill(proc.pid, signal.SIGKILL)  # the master: its workers die with it
        proc.wait(timeout=10)
        wait_for(lambda: not any(_alive(w) for w in respawned) or None, 15, "the orphaned workers to exit")
        assert _get(base + "/healthz")[0] == 0  # nothing serves the port any more

        second = _start(env, port, log)
        wait_for(lambda: _get(base + "/healthz")[0] == 200, 90, "healthz of the restarted server")
    finally:
        for p in (proc, second):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)


def test_two_web_servers_on_one_host_do_not_interfere(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    procs, bases, ports = [], [], []
    try:
        for n in (1, 2):
            env = _env(tmp_path / f"var{n}")
            env["HOME"] = str(home)
            port = free_port()
            procs.append(_start(env, port, tmp_path / f"web{n}.log"))
            bases.append(f"http://127.0.0.1:{port}")
            ports.append(port)
        for base in bases:
            wait_for(lambda b=base: _get(b + "/healthz")[0] == 200, 90, "the web server")
        # Each keeps its Prometheus files in a directory of its own (data directory and port).
        dirs = [metrics_dir(tmp_path / f"var{n}", port) for n, port in zip((1, 2), ports, strict=True)]
        assert dirs[0] != dirs[1]
        for d in dirs:
            assert list(d.glob("*.db"))
        assert not list(home.iterdir())  # nothing shared in the home directory

        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(timeout=40) == 0
        assert _get(bases[0] + "/healthz")[0] == 0
        assert _get(bases[1] + "/healthz")[0] == 200  # the other one is untouched
        assert list(dirs[1].glob("*.db"))
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
