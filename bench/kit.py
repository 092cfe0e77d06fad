"""Shared pieces of `bench/run.py`: rows, percentiles, scratch databases, server processes, load.

Nothing here is a test: rows report a target and whether it was met, they never assert it.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXTRA = ROOT / "bench" / ".extra"  # pip --target of bench/requirements-extra.txt (`make bench`)
PG_ADMIN = os.environ.get("CONVHUB_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("CONVHUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
AMQP = os.environ.get("CONVHUB_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


@dataclass
class Row:
    group: str
    name: str
    values: dict[str, Any] = field(default_factory=dict)
    target: str = ""
    met: bool | None = None  # None: no target, or not measurable here
    note: str = ""

    def cell(self) -> str:
        parts = []
        for k, v in self.values.items():
            if isinstance(v, float):
                v = f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"
            elif isinstance(v, int):
                v = f"{v:,}"
            parts.append(f"{k}={v}")
        return "  ".join(parts)


def pct(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def ms(x: float) -> float:
    return round(x * 1000, 2)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 60) -> None:  # type: ignore[type-arg]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


@contextlib.contextmanager
def scratch_pg() -> Iterator[str]:
    """A fresh PostgreSQL database (dropped afterwards); yields its URL."""
    from sqlalchemy import create_engine, text

    name = f"convhub_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as c:
            c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@contextlib.contextmanager
def tmpdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="convhub-bench-") as d:
        yield Path(d)


def bench_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVHUB_")}
    paths = [str(ROOT), str(ROOT / "bench")] + ([str(EXTRA)] if EXTRA.is_dir() else [])
    env["PYTHONPATH"] = os.pathsep.join(paths + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    env.update(extra)
    return env


def web_argv(data_dir: Path, port: int, workers: int = 2, threads: int = 8) -> tuple[list[str], str]:
    """Exactly the command line `convhub web` execs (granian, captured from app.cli.cmd_web; the
    app target is its last element, see `set_target`), and the PROMETHEUS_MULTIPROC_DIR it sets."""
    import argparse

    from app import cli

    captured: list[str] = []

    def fake_exec(_path: str, argv: list[str]) -> None:
        captured.extend(argv)

    real = os.execv
    os.execv = fake_exec  # type: ignore[assignment]
    saved = dict(os.environ)
    os.environ["CONVHUB_DATA_DIR"] = str(data_dir)
    try:
        cli.cmd_web(argparse.Namespace(host="127.0.0.1", port=port, workers=workers, threads=threads, access_log=False))
    finally:
        os.execv = real
        mp_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        os.environ.clear()
        os.environ.update(saved)
    return captured, mp_dir


def set_target(argv: list[str], target: str) -> list[str]:
    """`convhub web`'s argv serving another app: "module:name" (a WSGI app) or "module:name()" (a
    factory that returns one). On an RSGI command line (`convhub web` buffering bodies) the app is
    served as convhub's is, through app.web.bodies: the factory "module:name_buffered()"."""
    out = [a for a in argv[:-1] if a != "--factory"]
    if _interface(argv) == "rsgi":
        return out + ["--factory", target.removesuffix("()") + "_buffered"]
    if target.endswith("()"):
        return out + ["--factory", target[:-2]]
    return out + [target]


def target_of(argv: list[str]) -> str:
    """The WSGI app target of an argv made by `set_target`, in its "module:name" / "module:name()" form."""
    if _interface(argv) == "rsgi":
        name = argv[-1].removesuffix("_buffered")
        return name + "()" if name.endswith("counted") else name
    return argv[-1] + ("()" if "--factory" in argv else "")


def _interface(argv: list[str]) -> str:
    return argv[argv.index("--interface") + 1] if "--interface" in argv else ""


@dataclass
class Server:
    proc: subprocess.Popen  # type: ignore[type-arg]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cpu_seconds(self) -> float:
        """User + system CPU of the server process and all its children (the workers)."""
        import psutil

        try:
            p = psutil.Process(self.proc.pid)
            procs = [p] + p.children(recursive=True)
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for q in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                t = q.cpu_times()
                total += t.user + t.system
        return total

    def stop(self) -> None:
        _RUNNING.discard(self)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # workers left behind by a master that died first

    def __hash__(self) -> int:
        return id(self)


# Servers started and not yet stopped: stopped when the driver exits (normally, on an exception,
# Ctrl-C or SIGTERM: see `stop_servers_on_exit`). A SIGKILLed driver cannot run this, so each server
# is also started with a parent-death signal (Linux): it gets SIGTERM when the driver dies.
_RUNNING: set[Server] = set()


def _stop_running() -> None:
    for srv in list(_RUNNING):
        with contextlib.suppress(Exception):
            srv.stop()


def stop_servers_on_exit() -> None:
    """Called once by a driver's main(): SIGTERM exits through atexit, which stops the servers."""
    import atexit

    atexit.register(_stop_running)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _libc() -> Any:
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _libc() if sys.platform == "linux" else None  # loaded here: nothing is imported after fork


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def start_server(argv: list[str], port: int, env: dict[str, str], log: Path | None = None) -> Server:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(argv, env=env, stdout=out, stderr=out, cwd=ROOT, start_new_session=True,
                            preexec_fn=_die_with_parent if _LIBC is not None else None)
    try:
        wait_port(port, proc)
    except Exception:
        proc.kill()
        raise
    srv = Server(proc, port)
    _RUNNING.add(srv)
    return srv


# ------------------------------------------------------------------ load from client processes


def _client_main(fn: Callable[..., dict[str, Any]], args: tuple[Any, ...], start_at: float, stop_at: float, q: Any) -> None:
    try:
        q.put(fn(*args, start_at=start_at, stop_at=stop_at))
    except Exception as exc:  # noqa: BLE001 - reported by the parent
        q.put({"error": f"{type(exc).__name__}: {exc}"})


def run_clients(fn: Callable[..., dict[str, Any]], args_per_client: list[tuple[Any, ...]], seconds: float, lead: float = 1.0) -> list[dict[str, Any]]:
    """Run fn(*args, start_at=, stop_at=) in one process per args tuple, all over the same window
    (after `lead` seconds of start-up and warm-up), and collect what each returns."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    start_at = time.time() + lead
    stop_at = start_at + seconds
    procs = [ctx.Process(target=_client_main, args=(fn, a, start_at, stop_at, q), daemon=True) for a in args_per_client]
    for p in procs:
        p.start()
    out = [q.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join(10)
    errors = [o["error"] for o in out if "error" in o]
    if errors:
        raise RuntimeError("; ".join(errors[:3]))
    return out


def _child(fn: Callable[..., Any], args: tuple[Any, ...], q: Any) -> None:
    try:
        q.put(("ok", fn(*args)))
    except Exception as exc:  # noqa: BLE001 - raised again in the parent
        q.put(("error", f"{type(exc).__name__}: {exc}"))


def in_child(fn: Callable[..., Any], *args: Any, timeout: float = 1800) -> Any:
    """fn(*args) in a forked process: broker connections (kombu pools are process-wide) and engines
    it opens never reach the driver, nor the client processes the driver forks later."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn, args, q))
    p.start()
    status, value = q.get(timeout=timeout)
    p.join(30)
    if status == "error":
        raise RuntimeError(value)
    return value


def python() -> str:
    return sys.executable
