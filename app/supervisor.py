"""A small process supervisor for `convhub serve` (web, Celery worker, beat on one machine).

A child that exits is restarted after a back-off that doubles with its recent crashes; a child that
crashes `max_crashes` times within `window_seconds` is a crash loop: the supervisor says so, stops
every child and exits 1. Everything stops only on SIGTERM/SIGINT (exit 0) or on a crash loop. One
more child is one more `Child` in the list given to `Supervisor`.

Children are started in the supervisor's process group (Ctrl-C in a terminal reaches them all) and,
on Linux, are told to die with it (PR_SET_PDEATHSIG), so a supervisor killed with SIGKILL leaves
no orphan listening on the port.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO


@dataclass(frozen=True)
class Child:
    """What to run: a name for the log and an argv; env None inherits the supervisor's."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] | None = None


@dataclass
class _Running:
    spec: Child
    proc: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None  # set while waiting out a back-off
    crashes: deque[float] = field(default_factory=deque)
    restarts: int = 0


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send `sig` to this process when its parent dies (PR_SET_PDEATHSIG); no-op
    elsewhere."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.prctl(1, sig)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    die_with_parent(signal.SIGTERM)


class Supervisor:
    def __init__(
        self,
        children: Sequence[Child],
        *,
        max_crashes: int = 5,
        window_seconds: float = 60.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stop_timeout: float = 20.0,
        tick: float = 0.2,
        out: TextIO | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        names = [c.name for c in children]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must differ: {names}")
        self._children = [_Running(c) for c in children]
        self.max_crashes = max_crashes
        self.window_seconds = window_seconds
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.stop_timeout = stop_timeout
        self.tick = tick
        self._out = out
        self._now = monotonic
        self._stop_signal = 0

    # ------------------------------------------------------------ public

    def run(self) -> int:
        """Start every child and keep them running. Returns the exit code for the command: 0 when
        asked to stop, 1 on a crash loop."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for c in self._children:
                self._start(c)
            code = self._watch()
        finally:
            self._stop_all()
            for s, h in previous.items():
                signal.signal(s, h)
        return code

    def pids(self) -> dict[str, int | None]:
        return {c.spec.name: (c.proc.pid if c.proc and c.proc.poll() is None else None) for c in self._children}

    # ------------------------------------------------------------ internals

    def _say(self, msg: str) -> None:
        print(f"convhub: {msg}", file=self._out or sys.stderr, flush=True)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._stop_signal = signum

    def _start(self, c: _Running) -> None:
        c.restart_at = None
        c.proc = subprocess.Popen(list(c.spec.argv), env=c.spec.env, preexec_fn=_die_with_parent if sys.platform == "linux" else None)

    def _watch(self) -> int:
        while not self._stop_signal:
            now = self._now()
            for c in self._children:
                if c.proc is not None and c.restart_at is None:
                    code = c.proc.poll()
                    if code is not None and not self._stop_signal:
                        if self._crashed(c, code, now):
                            return 1
                elif c.restart_at is not None and now >= c.restart_at:
                    c.restarts += 1
                    self._start(c)
                    self._say(f"{c.spec.name} restarted (pid {c.proc.pid if c.proc else '?'}, restart {c.restarts})")
            time.sleep(self.tick)
        self._say(f"{signal.Signals(self._stop_signal).name} received; stopping")
        return 0

    def _crashed(self, c: _Running, code: int, now: float) -> bool:
        """Record a crash; True when it makes a crash loop (everything stops)."""
        c.crashes.append(now)
        while c.crashes and now - c.crashes[0] > self.window_seconds:
            c.crashes.popleft()
        how = f"killed by {signal.Signals(-code).name}" if code < 0 and -code in signal.Signals._value2member_map_ else f"exited with {code}"
        if len(c.crashes) >= self.max_crashes:
            self._say(
                f"{c.spec.name} {how}: {len(c.crashes)} crashes within {self.window_seconds:.0f} s, a crash loop; "
                "giving up and stopping everything"
            )
            return True
        delay = min(self.backoff_max, self.backoff_initial * 2 ** (len(c.crashes) - 1))
        c.restart_at = now + delay
        self._say(f"{c.spec.name} {how}; restarting in {delay:.1f} s ({len(c.crashes)} crash(es) within {self.window_seconds:.0f} s)")
        return False

    def _stop_all(self) -> None:
        live = [c.proc for c in self._children if c.proc is not None and c.proc.poll() is None]
        for p in live:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = self._now() + self.stop_timeout
        for p in live:
            try:
                p.wait(timeout=max(0.1, deadline - self._now()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
