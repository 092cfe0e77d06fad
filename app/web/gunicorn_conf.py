"""gunicorn settings used by `convhub web` (`-c python:app.web.gunicorn_conf`).

Prometheus multiprocess mode: every worker writes its counters to files in
PROMETHEUS_MULTIPROC_DIR (set, and emptied, by `convhub web` before gunicorn starts). When a worker
exits, its live-gauge files must be marked dead or /metrics keeps reporting them.
"""

from __future__ import annotations

import os


def child_exit(server, worker):  # type: ignore[no-untyped-def]
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
