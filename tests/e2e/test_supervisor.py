"""app.supervisor with real child processes: restart after a crash, give up on a crash loop (and
stop the other children), stop everything on SIGTERM."""

from __future__ import annotations

import io
import os
import signal
import sys
import threading
from pathlib import Path

from app.supervisor import Child, Supervisor
from tests.conftest import wait_for

SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def fast(children: list[Child], out: io.StringIO) -> Supervisor:
    return Supervisor(children, backoff_initial=0.01, backoff_max=0.05, tick=0.02, stop_timeout=10, out=out)


def test_a_crash_loop_stops_everything_loudly_with_exit_1(tmp_path):
    out = io.StringIO()
    sup = fast([Child("sleeper", SLEEPER), Child("crasher", [sys.executable, "-c", "raise SystemExit(3)"])], out)
    assert sup.run() == 1
    text = out.getvalue()
    assert text.count("crasher exited with 3; restarting") == 4
    assert "crasher exited with 3: 5 crashes within 60 s, a crash loop; giving up and stopping everything" in text
    assert sup.pids() == {"sleeper": None, "crasher": None}  # the healthy child was stopped too


def test_a_crashed_child_is_restarted_and_sigterm_stops_all(tmp_path):
    marker = tmp_path / "started"
    # Crashes on its first start only (a marker file remembers it), then runs.
    once = [sys.executable, "-c", f"import pathlib, sys, time; p = pathlib.Path({str(marker)!r})\n"
            "if not p.exists():\n    p.write_text('1'); sys.exit(7)\ntime.sleep(600)"]
    out = io.StringIO()
    sup = fast([Child("once", once), Child("sleeper", SLEEPER)], out)

    def stop_when_restarted() -> None:
        wait_for(lambda: "once restarted" in out.getvalue() and all(sup.pids().values()), 30, "the restart")
        os.kill(os.getpid(), signal.SIGTERM)

    t = threading.Thread(target=stop_when_restarted)
    t.start()
    code = sup.run()
    t.join()
    assert code == 0
    assert "once exited with 7; restarting" in out.getvalue() and "SIGTERM received; stopping" in out.getvalue()
    assert sup.pids() == {"once": None, "sleeper": None}
    assert Path(marker).read_text() == "1"
