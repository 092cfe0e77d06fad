"""CPU per factory request of convhub's WSGI app, called in-process (no server, no sockets).

One process: the app from `create_app`, one factory, `--jobs` queued 10 KiB one-chunk documents.
The loop calls the WSGI callable directly with a prepared environ: poll -> finish until the queue
is empty, then `--empty` empty polls. Process CPU time (user + system) per cycle and per empty
poll, minus the cost of this script's own request building and response parsing (measured apart,
`client_ms`). No server threads, no GIL hand-offs, no other process: on a machine shared with other
work this is the steadiest measure of the app's own CPU, and the one to compare commits with
(alternate them in the same minutes). `--rounds` repeats the whole measure.

    .venv/bin/python bench/bench_wsgi_cpu.py [--db postgresql|sqlite] [--jobs 600] [--empty 1500] [--rounds 1]
    /tmp/pyspy/bin/py-spy record --gil -f raw -o /tmp/cpu.txt -- .venv/bin/python bench/bench_wsgi_cpu.py

No broker (the mirror is off): what is measured is the web tier and the database statements.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import tempfile
import time
import uuid
import xmlrpc.client
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
DOC = bytes(range(256)) * 40  # 10 KiB
RESULT = xmlrpc.client.Binary(b"%PDF " + DOC[:4000])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    ap.add_argument("--jobs", type=int, default=600)
    ap.add_argument("--empty", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()

    from app.config import Settings
    from app.db.migrate import upgrade
    from app.domain.matching import WorkerSpec
    from app.runtime import build_runtime
    from app.services import admin, submission
    from app.web import create_app

    tmp = Path(tempfile.mkdtemp(prefix="convhub-bench-cpu-"))
    pg_name = None
    if args.db == "postgresql":
        pg_name = f"convhub_bench_{uuid.uuid4().hex[:8]}"
        adm = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with adm.connect() as c:
            c.execute(text(f'CREATE DATABASE "{pg_name}"'))
        url = PG_ADMIN.rsplit("/", 1)[0] + f"/{pg_name}"
    else:
        url = f"sqlite:///{tmp / 'convhub.db'}"
    upgrade(url)
    settings = Settings(data_dir=tmp, database_url=url, broker_url=f"sqla+sqlite:///{tmp / 'broker.db'}",
                        auth_cache_seconds=3600, log_level="WARNING")
    rt = build_runtime(settings, broker=False)
    try:
        with rt.db.session() as s:
            cid = admin.add_client(s, rt.now(), "bench", "x").id
            admin.add_factory(s, rt.now(), "f1", "secret", [WorkerSpec.parse("LibreOffice Writer|7.4|odt|pdf,png,odf")])
        app = create_app(rt)
        auth = "Basic " + base64.b64encode(b"f1:secret").decode()

        def call(method: str, *params: Any) -> Any:
            body = xmlrpc.client.dumps(params, method).encode()
            environ = {
                "REQUEST_METHOD": "POST", "PATH_INFO": "/xmlrpc", "SCRIPT_NAME": "", "SERVER_NAME": "bench",
                "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_TYPE": "text/xml",
                "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": auth, "REMOTE_ADDR": "127.0.0.1",
                "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
                "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.version": (1, 0),
            }
            it = app(environ, lambda status, headers, exc_info=None: None)
            out = b"".join(it)
            if hasattr(it, "close"):
                it.close()
            return xmlrpc.client.loads(out, use_builtin_types=True)[0][0]

        call("jobs.poll", "f1")  # authenticates, touches the factory, runs the lazy reclaim once
        for _ in range(args.rounds):
            with rt.db.session() as s:
                content = submission.upload(s, rt.now(), client_id=cid, filename="d.odt", parts=DOC, max_bytes=1 << 20)
                submission.enqueue_batch(s, rt.now(), rt.mirror, client_id=cid, content=content,
                                         application="LibreOffice Writer", version="7.4", count=args.jobs, fmt="pdf")
            cycles = 0
            c0, w0 = time.process_time(), time.perf_counter()
            while job := call("jobs.poll", "f1"):
                call("jobs.finish", "f1", job["job"], "pdf", RESULT, job["lease"])
                cycles += 1
            cycle_cpu = (time.process_time() - c0) / max(cycles, 1) * 1000
            cycle_wall = (time.perf_counter() - w0) / max(cycles, 1) * 1000
            c1 = time.process_time()
            for _ in range(args.empty):
                call("jobs.poll", "f1")
            empty_cpu = (time.process_time() - c1) / args.empty * 1000
            # This script's share of a cycle: building two requests and parsing two answers.
            c2 = time.process_time()
            for _ in range(300):
                xmlrpc.client.dumps(("f1",), "jobs.poll")
                xmlrpc.client.loads(xmlrpc.client.dumps(({"job": "x" * 36, "document": DOC},), methodresponse=True),
                                    use_builtin_types=True)
                xmlrpc.client.dumps(("f1", "x" * 36, "pdf", RESULT, "y" * 36), "jobs.finish")
                xmlrpc.client.loads(xmlrpc.client.dumps(("r" * 36,), methodresponse=True))
            client = (time.process_time() - c2) / 300 * 1000
            print(json.dumps({
                "db": args.db, "cycles": cycles, "cycle_cpu_ms": round(cycle_cpu - client, 3),
                "cycle_wall_ms": round(cycle_wall, 3), "client_ms": round(client, 3), "empty_poll_cpu_ms": round(empty_cpu, 3),
            }), flush=True)
    finally:
        rt.close()
        if pg_name:
            with adm.connect() as c:
                c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{pg_name}' AND pid <> pg_backend_pid()"))
                c.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}"'))
            adm.dispose()


if __name__ == "__main__":
    main()
