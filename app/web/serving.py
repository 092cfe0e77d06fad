"""How `convhub web` runs the WSGI app: granian, chosen by measurement (docs/benchmarks.md, "The
serving stack"), with the production settings of docs/operations.md.

granian's HTTP side is Rust (tokio/hyper): it reads request heads and writes responses without
holding a Python thread. Request bodies are another matter: granian's WSGI interface hands a request
to a thread as soon as its head is in, and that thread waits for the body. So `convhub web` serves
granian's RSGI interface by default, and app.web.bodies reads each body whole on the worker's event
loop before one of the app's `threads` runs it (CONVHUB_WEB_BUFFER_BODIES=0: granian's WSGI
interface, only behind a proxy that buffers bodies). Connections that trickle their head or body,
or read their answer slowly, then cost a socket, not a thread. What each flag guards:

- `--respawn-failed-workers`: a worker that dies (kill -9, OOM) is started again by the master;
- `--http 1`: the header-read timeout below applies to HTTP/1 only, so no HTTP/2 prior-knowledge
  connection can hold a connection open without it (factories and SOAP clients speak HTTP/1.1);
- `--http1-header-read-timeout`: a connection that has not sent a whole request head within it is
  closed; on a kept-alive connection the same clock runs from the previous response, so it is also
  the idle keep-alive timeout;
- `--workers-kill-timeout`: a worker that does not stop within it after SIGTERM is killed;
- `--backpressure`: requests in progress per worker beyond which granian stops accepting.

Prometheus multiprocess mode: granian has no hook for a worker's exit (gunicorn's child_exit), so
the directory is emptied when the server starts and `app.web.metrics_view` drops the live-gauge files
of processes that no longer exist at each scrape; convhub's own multiprocess metrics are counters and
histograms, whose files must outlive a dead worker so that totals never go down.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from app.config import Settings

HEADER_READ_TIMEOUT_MS = 15_000
WORKERS_KILL_TIMEOUT_S = 20
RESPAWN_INTERVAL_S = 1.0
BACKLOG = 2048


def metrics_dir(data_dir: Path, port: int, shm: Path = Path("/dev/shm")) -> Path:
    """Where the web workers keep their metric files: in shared memory when the host has it, named
    after this server's data directory and port; else under the data directory.

    prometheus_client maps those files into memory and grows them sparsely (truncate, then write
    through the map): on a full disk the first write to a new page is a SIGBUS that kills the
    worker in the middle of its requests. Kept off the data disk, a full data disk costs clear
    errors, not workers. (A stopped server's files stay there, a few pages per worker, until the
    same data directory and port start again and empty them.)"""
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        tag = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
        return shm / f"convhub-prometheus-{os.getuid()}" / f"{tag}-web-{port}"
    return data_dir / "prometheus" / f"web-{port}"


def prepare_metrics_dir(settings: Settings, port: int, configured: str | None = None) -> Path:
    """This server's Prometheus multiprocess directory (one per port unless configured), emptied of a
    previous run's files."""
    configured = configured if configured is not None else os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    mp = Path(configured or metrics_dir(settings.data_dir, port)).resolve()
    mp.mkdir(parents=True, exist_ok=True)
    for stale in mp.glob("*.db"):
        stale.unlink(missing_ok=True)
    return mp


def web_argv(host: str, port: int, *, workers: int, threads: int, access_log: bool = False,
             header_read_timeout_ms: int = HEADER_READ_TIMEOUT_MS, buffer_bodies: bool = True) -> list[str]:
    """The granian command line of `convhub web` (the CLI's --workers are granian's worker
    processes; --threads the threads per worker that run the app).

    With `buffer_bodies` (the default) granian serves the RSGI interface and app.web.bodies reads
    each body whole on the worker's event loop before one of `threads` threads runs the app;
    without, granian's own WSGI interface hands the request to one of its `threads` blocking
    threads at once, which then waits for the body (only behind a proxy that buffers bodies)."""
    interface = ["--interface", "rsgi"] if buffer_bodies else ["--interface", "wsgi", "--blocking-threads", str(threads)]
    return [
        sys.executable, "-m", "granian",
        *interface,
        "--factory",
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
        "--http", "1",
        "--no-ws",
        "--http1-header-read-timeout", str(header_read_timeout_ms),
        "--backlog", str(BACKLOG),
        "--respawn-failed-workers",
        "--respawn-interval", str(RESPAWN_INTERVAL_S),
        "--workers-kill-timeout", str(WORKERS_KILL_TIMEOUT_S),
        "--log-level", "warning",
        "--access-log" if access_log else "--no-access-log",
        "app.web.wsgi:make_app",  # last: the benchmark swaps the target (bench/kit.py set_target)
    ]
