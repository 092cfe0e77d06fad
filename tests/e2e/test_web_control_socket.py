"""Two `convhub web` on one host do not share gunicorn's control socket (gunicorn 25.1+ puts one per
user in $XDG_RUNTIME_DIR or ~/.gunicorn by default: the second instance took it over, and the first
to stop deleted it). Each instance's socket is in its own data directory and answers for it."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port, wait_for
from tests.e2e.test_serve import CONVHUB, _env, _get

GUNICORNC = [sys.executable, "-c", "import sys; from gunicorn.ctl.cli import main; sys.exit(main())"]


def stats(sock: Path) -> dict | None:
    out = subprocess.run(GUNICORNC + ["-s", str(sock), "-c", "show stats", "-j"], capture_output=True, text=True, timeout=30)
    try:
        return json.loads(out.stdout) if out.returncode == 0 else None
    except ValueError:
        return None


def test_two_web_servers_on_one_host_each_have_their_own_control_socket(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    procs, socks, bases = [], [], []
    try:
        for n in (1, 2):
            env = _env(tmp_path / f"var{n}")
            env["HOME"] = str(home)
            env.pop("XDG_RUNTIME_DIR", None)
            port = free_port()
            log = (tmp_path / f"web{n}.log").open("w")
            procs.append(subprocess.Popen(CONVHUB + ["web", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
            bases.append(f"http://127.0.0.1:{port}")
            socks.append(tmp_path / f"var{n}" / "run" / f"gunicorn-127.0.0.1-{port}.ctl")
        for base, sock in zip(bases, socks, strict=True):
            wait_for(lambda b=base: _get(b + "/healthz")[0] != 0, 60, "the web server")
            wait_for(lambda s=sock: s.exists(), 30, "its control socket")
        for proc, sock in zip(procs, socks, strict=True):
            assert stat.S_ISSOCK(sock.stat().st_mode)
            assert wait_for(lambda s=sock: stats(s), 30, "stats")["pid"] == proc.pid  # each answers for itself
        assert not (home / ".gunicorn").exists()

        procs[0].send_signal(signal.SIGTERM)
        assert procs[0].wait(timeout=40) == 0
        assert not socks[0].exists()
        assert socks[1].exists() and stats(socks[1])["pid"] == procs[1].pid  # the other one is untouched
        assert _get(bases[1] + "/healthz")[0] != 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
