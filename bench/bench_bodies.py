"""What buffering request bodies costs the hot path: `convhub web` as it runs by default (granian's
RSGI interface, bodies read whole by app.web.bodies before a thread runs the app) against
CONVHUB_WEB_BUFFER_BODIES=0 (granian's own WSGI interface), side by side, in alternating rounds.

Per server: the trivial ping and the real empty poll (PostgreSQL + Redis, a factory with nothing
to do), 8 keep-alive clients; calls/s and the server's CPU per call (all its processes).

    .venv/bin/python bench/bench_bodies.py [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

from kit import (  # noqa: E402
    REDIS,
    bench_env,
    free_port,
    in_child,
    run_clients,
    scratch_pg,
    set_target,
    start_server,
    tmpdir,
    web_argv,
)
from rows_http import (  # noqa: E402
    CLIENTS,
    IDLE_AUTH,
    _granian_direct,
    raw_client,
    seed_dispatch,
    start_counted,
    warm,
    xml_call,
)

MODES: list[tuple[str, Any]] = [("buffered (rsgi)", None), ("direct (wsgi)", _granian_direct)]


def one(tmp: Path, env: dict[str, str], app: str, edit: Any, seconds: float) -> tuple[float, float]:
    if app == "ping":
        port = free_port()
        argv, mp_dir = web_argv(tmp, port)
        argv = set_target(argv, "wsgi_apps:ping")
        srv = start_server(edit(argv, port) if edit else argv, port, bench_env(PROMETHEUS_MULTIPROC_DIR=mp_dir))
        body, auth = xml_call("ping"), ""
    else:
        srv, _ = start_counted(tmp, env, edit)
        body, auth = xml_call("jobs.poll", "idle"), IDLE_AUTH
    try:
        warm(srv.port, body, auth)
        c0 = srv.cpu_seconds()
        res = run_clients(raw_client, [(srv.port, body, auth, True)] * CLIENTS, seconds, lead=0.5)
        c1 = srv.cpu_seconds()
    finally:
        srv.stop()
    n = sum(len(r["lat"]) for r in res)
    faults = sum(r["faults"] for r in res)
    if faults:
        raise RuntimeError(f"{faults} faults")
    # The CPU is taken over the lead too: per call it is over-counted alike for both modes.
    return n / seconds, (c1 - c0) / max(n, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with tmpdir() as tmp, scratch_pg() as db_url:
        st = in_child(seed_dispatch, tmp, db_url, REDIS, 0)
        for r in range(args.rounds):
            for app in ("ping", "empty poll"):
                for name, edit in MODES:
                    rate, cpu = one(tmp, st.env, app, edit, args.seconds)
                    print(f"round {r + 1} {app:10s} {name:16s} {rate:7.0f} calls/s  {cpu * 1e6:5.0f} us CPU/call", flush=True)


if __name__ == "__main__":
    main()
