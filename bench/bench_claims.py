"""Claim throughput and empty-poll cost on PostgreSQL and SQLite.

A factory serving three (application, version) pairs claims from a backlog spread over them (the
case where a naive `application IN (...) ORDER BY id` sorts the backlog per poll). Prints a table
and writes JSON (default bench/results/claims.json). Uses the services directly, no broker.

    .venv/bin/python bench/bench_claims.py [--backlog 100000] [--seconds 5] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, insert, text

from app.db.engine import Database
from app.db.migrate import upgrade
from app.db.models import Blob, ClientApplication, Content, Job
from app.domain.leases import LeasePolicy
from app.domain.matching import WorkerSpec
from app.services import claims

PAIRS = [("LibreOffice Writer", "7.4", "odt"), ("LibreOffice Calc", "7.4", "ods"), ("LibreOffice Impress", "7.4", "odp")]
WORKERS = tuple(WorkerSpec(a, v, frozenset({d}), frozenset({"pdf", "png", "odf"})) for a, v, d in PAIRS)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def seed(db: Database, backlog: int) -> None:
    with db.session() as s:
        s.execute(insert(ClientApplication).values(id=1, name="bench", secret_hash="x", disabled=False, created_at=NOW))
        s.execute(insert(Blob).values(id=1, size=1, sha256="", created_at=NOW))
        s.execute(insert(Content).values(id=1, identifier=str(uuid.uuid4()), client_id=1, blob_id=1, filename="d.odt", doctype="odt", created_at=NOW))
    rows = []
    for i in range(backlog):
        a, v, d = PAIRS[i % 3]
        rows.append(dict(guid=str(uuid.uuid4()), client_id=1, content_id=1, application=a, version=v, doctype=d, format="pdf",
                         page_start=1, page_end=0, state=0, submitted_at=NOW, updated_at=NOW, attempts=0, max_attempts=3))
    for i in range(0, backlog, 10000):
        with db.session() as s:
            s.execute(insert(Job), rows[i : i + 10000])
    with db.engine.connect() as c:
        c.execute(text("ANALYZE"))
        c.commit()


def claims_per_second(db: Database, threads: int, seconds: float) -> float:
    policy = LeasePolicy()
    count = [0] * threads
    stop = time.monotonic() + seconds

    def run(n: int) -> None:
        while time.monotonic() < stop:
            with db.read_session() as s:
                heads = claims.probe(s, WORKERS)
            if not heads:
                return
            with db.session() as s:
                got = claims.claim(s, NOW, policy, owner=f"f{n}", workers=WORKERS, pairs=[p for _, p in heads])
            if got is not None:
                count[n] += 1

    ts = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(count) / (time.monotonic() - t0)


def empty_poll_ms(db: Database, n: int = 500) -> float:
    idle = tuple(WorkerSpec(f"Nobody {i}", "1.0", frozenset({"odt"}), frozenset({"pdf"})) for i in range(3))
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        with db.read_session() as s:
            assert claims.probe(s, idle) == []
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def run_one(kind: str, url: str, backlog: int, seconds: float) -> dict[str, object]:
    upgrade(url)
    db = Database(url, pool_size=20)
    t0 = time.monotonic()
    seed(db, backlog)
    out: dict[str, object] = {"database": kind, "backlog": backlog, "pairs_per_factory": 3, "seed_seconds": round(time.monotonic() - t0, 1)}
    out["empty_poll_ms_p50"] = round(empty_poll_ms(db), 3)
    for threads in (1, 8):
        out[f"claims_per_s_{threads}_threads"] = round(claims_per_second(db, threads, seconds), 1)
    db.dispose()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--out", default="bench/results/claims.json")
    args = ap.parse_args()
    results = []
    name = f"convhub_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        results.append(run_one("postgresql", args.pg.rsplit("/", 1)[0] + f"/{name}", args.backlog, args.seconds))
    finally:
        with admin.connect() as c:
            c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    with tempfile.TemporaryDirectory() as tmp:
        results.append(run_one("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", args.backlog // 5, args.seconds))
    for r in results:
        print("  ".join(f"{k}={v}" for k, v in r.items()))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"bench": "claims", "results": results}, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
