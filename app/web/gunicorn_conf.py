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


def on_starting(server):  # type: ignore[no-untyped-def]
    """gunicorn 25.1+ starts a control server on a Unix socket whose default path is one per user
    ($XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/gunicorn.ctl): a second instance on the host takes
    it over, and the first one to stop deletes it. Each instance gets its own socket in its data
    directory instead (run/gunicorn-HOST-PORT.ctl), unless one was chosen on the command line; a path
    too long for a Unix socket disables the control server."""
    setting = server.cfg.settings.get("control_socket")
    if setting is None or server.cfg.control_socket_disable or setting.value != setting.default:
        return
    from app.config import load_settings

    bind = str(server.cfg.bind[0]) if server.cfg.bind else "default"
    name = "gunicorn-" + "".join(c if c.isalnum() or c in ".-" else "-" for c in bind) + ".ctl"
    path = load_settings().data_dir.resolve() / "run" / name
    if len(str(path).encode()) > 100:  # sun_path holds 108 bytes
        server.log.warning("control socket disabled: %s is too long for a Unix socket", path)
        server.cfg.set("control_socket_disable", True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    server.cfg.set("control_socket", str(path))


def on_exit(server):  # type: ignore[no-untyped-def]
    """Metric files in shared memory (app.cli.metrics_dir) hold RAM until the host reboots: this run's
    are removed when it stops (they would be emptied at the next start anyway)."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
    if "/convhub-prometheus-" in path:
        import shutil

        shutil.rmtree(path, ignore_errors=True)
