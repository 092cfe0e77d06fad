"""Entry of `convhub web`: granian calls `app.web.wsgi:make_app` (a factory) once in each worker
process; settings come from the environment. It returns the WSGI app, served through
app.web.bodies (granian's RSGI interface) unless CONVHUB_WEB_BUFFER_BODIES is off."""

from __future__ import annotations

import os

# Set by `convhub web`: its own pid (granian's master once it execs granian), and the number of
# threads per worker (half of them at most stream large responses, see app.web.slow_readers).
MASTER_PID_ENV = "CONVHUB_WEB_MASTER_PID"
THREADS_ENV = "CONVHUB_WEB_THREADS"


def _die_with_master() -> None:
    """A worker whose master is killed with SIGKILL would keep serving the port on its own (granian's
    workers hold the listening socket): have the kernel kill it with the master instead, and leave at
    once if the master is already gone."""
    master = os.environ.get(MASTER_PID_ENV, "")
    if not master.isdigit() or int(master) == os.getpid():
        return
    import signal

    from app.supervisor import die_with_parent

    die_with_parent(signal.SIGKILL)
    if os.getppid() != int(master):
        os._exit(1)


def make_app():  # type: ignore[no-untyped-def]
    from app.config import load_settings
    from app.logs import configure_logging
    from app.runtime import build_runtime
    from app.web import create_app
    from app.web.slow_readers import SlowReaderGuard

    _die_with_master()
    settings = load_settings()
    configure_logging(settings)
    raw = os.environ.get(THREADS_ENV, "")
    threads = int(raw) if raw.isdigit() else 8
    app = SlowReaderGuard(create_app(build_runtime(settings)), streams=threads // 2)
    if not settings.web_buffer_bodies:
        return app
    from app.web.bodies import BufferedBodies

    return BufferedBodies(app, threads=threads, body_timeout=settings.web_body_timeout_seconds,
                          max_body=settings.max_request_bytes)
