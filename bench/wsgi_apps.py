"""WSGI apps the benchmark serves (not product code).

* `ping`: a trivial XML-RPC-shaped answer, for the serving stack's ceiling.
* `ping_buffered()`, `counted_buffered()`: the same served as `convhub web` serves by default,
  through app.web.bodies over granian's RSGI interface (bench/kit.py set_target picks these names
  for an RSGI command line).
* `counted()`: convhub's own app (`app.web.wsgi.make_app()`, settings from the environment) with
  SQLAlchemy event counters installed first: statements sent, transactions begun and pool checkouts
  (each checkout is one pre-ping round trip while the engine pre-pings). Every worker writes its
  totals to $CONVHUB_BENCH_COUNT_DIR/<pid>.json a few times a second; the driver sums the files.
  The product is unchanged: the listeners are attached to the Engine and Pool classes from here.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

PONG = (b"<?xml version='1.0'?>\n<methodResponse><params><param><value><string>pong</string></value>"
        b"</param></params></methodResponse>\n")


def ping(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    n = int(environ.get("CONTENT_LENGTH") or 0)
    if n:
        environ["wsgi.input"].read(n)
    start_response("200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(PONG)))])
    return [PONG]


def ping_buffered() -> Any:
    from app.web.bodies import BufferedBodies

    return BufferedBodies(ping, threads=int(os.environ.get("CONVHUB_WEB_THREADS") or 8), body_timeout=120,
                          max_body=200 * 1024 * 1024)


def counted_buffered() -> Any:
    os.environ["CONVHUB_WEB_BUFFER_BODIES"] = "1"
    return _counted()


def counted() -> Any:
    os.environ["CONVHUB_WEB_BUFFER_BODIES"] = "0"  # a WSGI app, for WSGI servers
    return _counted()


def _counted() -> Any:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    counts = {"statements": 0, "transactions": 0, "checkouts": 0}
    lock = threading.Lock()

    def bump(key: str) -> None:
        with lock:
            counts[key] += 1

    event.listen(Engine, "before_cursor_execute", lambda *a, **k: bump("statements"))
    event.listen(Engine, "begin", lambda *a, **k: bump("transactions"))
    event.listen(Pool, "checkout", lambda *a, **k: bump("checkouts"))
    out = Path(os.environ["CONVHUB_BENCH_COUNT_DIR"])

    def writer() -> None:
        while True:
            time.sleep(0.2)
            with lock:
                snap = dict(counts)
            tmp = out / f".{os.getpid()}.tmp"
            tmp.write_text(json.dumps(snap))
            tmp.replace(out / f"{os.getpid()}.json")

    from app.web.wsgi import make_app

    app = make_app()
    threading.Thread(target=writer, daemon=True, name="bench-counts").start()
    return app


def read_counts(directory: Path) -> dict[str, int]:
    total = {"statements": 0, "transactions": 0, "checkouts": 0}
    for f in directory.glob("*.json"):
        for k, v in json.loads(f.read_text()).items():
            total[k] += v
    return total
