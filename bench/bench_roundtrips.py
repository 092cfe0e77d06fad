"""The factory hot path over the real WSGI app: database round trips per request and cycles/s.

One process: the app served by werkzeug (threaded) on loopback, one stdlib XML-RPC client doing
poll -> finish cycles over `--jobs` queued one-chunk documents (10 KiB), then `--empty` empty polls.
Round trips are counted as tests/integration/xmlrpc/test_round_trips.py counts them (statements,
BEGIN/COMMIT/ROLLBACK a driver sends itself, pre-pings). Run it under py-spy to see where the web
CPU goes:

    .venv/bin/python bench/bench_roundtrips.py [--db postgresql|sqlite] [--jobs 500] [--empty 1000]
    .venv/bin/py-spy record -o /tmp/hot.txt -f raw -- .venv/bin/python bench/bench_roundtrips.py
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
import xmlrpc.client
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import create_engine, event, text

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


class Counter:
    def __init__(self, engine) -> None:  # type: ignore[no-untyped-def]
        self.n = 0
        sqlite = engine.dialect.name == "sqlite"

        def auto(conn) -> bool:  # type: ignore[no-untyped-def]
            return conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"

        def stmt(*a) -> None:  # type: ignore[no-untyped-def]
            self.n += 1

        def begin(conn) -> None:  # type: ignore[no-untyped-def]
            if not sqlite and not auto(conn):
                self.n += 1

        def end(conn) -> None:  # type: ignore[no-untyped-def]
            if not auto(conn):
                self.n += 1

        event.listen(engine, "before_cursor_execute", stmt)
        event.listen(engine, "begin", begin)
        event.listen(engine, "commit", end)
        event.listen(engine, "rollback", end)
        ping = engine.dialect.do_ping

        def counted(c):  # type: ignore[no-untyped-def]
            self.n += 1
            return ping(c)

        engine.dialect.do_ping = counted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["postgresql", "sqlite"], default="postgresql")
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--empty", type=int, default=1000)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import logging

    from werkzeug.serving import make_server

    from app.config import Settings
    from app.db.migrate import upgrade
    from app.domain.matching import WorkerSpec
    from app.runtime import build_runtime
    from app.services import admin, submission
    from app.web import create_app

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="convhub-bench-rt-"))
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
    settings = Settings(data_dir=tmp, database_url=url, broker_url=f"sqla+sqlite:///{tmp / 'broker.db'}", auth_cache_seconds=3600)
    rt = build_runtime(settings, broker=False)
    try:
        with rt.db.session() as s:
            cid = admin.add_client(s, rt.now(), "bench", "x").id
            admin.add_factory(s, rt.now(), "f1", "secret", [WorkerSpec.parse("LibreOffice Writer|7.4|odt|pdf,png,odf")])
        doc = bytes(range(256)) * 40  # 10 KiB
        with rt.db.session() as s:
            content = submission.upload(s, rt.now(), client_id=cid, filename="d.odt", parts=doc, max_bytes=1 << 20)
            submission.enqueue_batch(
                s, rt.now(), rt.mirror, client_id=cid, content=content, application="LibreOffice Writer", version="7.4",
                count=args.jobs, fmt="pdf",
            )
        server = make_server("127.0.0.1", 0, create_app(rt), threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        p = xmlrpc.client.ServerProxy(f"http://{quote('f1')}:secret@127.0.0.1:{server.server_port}/xmlrpc")
        p.jobs.poll("f1")  # warm: authentication, touch, lazy reclaim (hands out one job)
        counter = Counter(rt.db.engine)
        polls = finishes = 0
        t0 = time.perf_counter()
        n0 = counter.n
        per_poll: list[int] = []
        per_finish: list[int] = []
        while True:
            a = counter.n
            job = p.jobs.poll("f1")
            per_poll.append(counter.n - a)
            if not job:
                break
            polls += 1
            b = counter.n
            p.jobs.finish("f1", job["job"], "pdf", xmlrpc.client.Binary(b"%PDF " + doc[:4000]), job["lease"])
            per_finish.append(counter.n - b)
            finishes += 1
        cycle_s = time.perf_counter() - t0
        cycle_trips = counter.n - n0
        t1 = time.perf_counter()
        e0 = counter.n
        for _ in range(args.empty):
            p.jobs.poll("f1")
        empty_s = time.perf_counter() - t1
        out = {
            "db": args.db,
            "cycles": finishes,
            "cycles_per_s": round(finishes / cycle_s, 1),
            "empty_polls_per_s": round(args.empty / empty_s, 1),
            "round_trips_per_cycle": round(cycle_trips / max(finishes, 1), 2),
            "round_trips_poll_with_job": max(set(per_poll[:-1]), key=per_poll[:-1].count) if len(per_poll) > 1 else None,
            "round_trips_finish": max(set(per_finish), key=per_finish.count) if per_finish else None,
            "round_trips_empty_poll": round((counter.n - e0) / max(args.empty, 1), 2),
        }
        print(json.dumps(out))
        if args.out:
            args.out.write_text(json.dumps(out, indent=2) + "\n")
        server.shutdown()
    finally:
        rt.close()
        if pg_name:
            with adm.connect() as c:
                c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{pg_name}' AND pid <> pg_backend_pid()"))
                c.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}"'))
            adm.dispose()


if __name__ == "__main__":
    main()
