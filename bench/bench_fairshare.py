"""Fair share: poll latency with one client vs 1,000 clients holding the same total backlog.

On PostgreSQL, one factory (one Writer worker) polls a backlog of `--backlog` QUEUED jobs held by
one client, then by 1,000 clients (`--backlog` / 1,000 each, tagged by the submission service
exactly as contentConvert tags them). A poll is what `jobs.poll` does in the database: the
read-only probe, then the claim transaction. Prints p50/p99 per case and writes JSON (default
bench/results/fairshare.json). Target (issue 13): the 1,000-client p99 at most 2x the one-client p99.

    .venv/bin/python bench/bench_fairshare.py [--backlog 50000] [--polls 2000] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, insert, select, text

from app.db.engine import Database
from app.db.migrate import upgrade
from app.db.models import Blob, ClientApplication, Content
from app.domain.leases import LeasePolicy
from app.domain.matching import WorkerSpec
from app.services import claims, submission
from app.services.ports import NullMirror

WORKERS = (WorkerSpec("LibreOffice Writer", "7.4", frozenset({"odt"}), frozenset({"pdf", "png", "odf"})),)
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def seed(db: Database, backlog: int, clients: int) -> None:
    with db.session() as s:
        s.execute(
            insert(ClientApplication),
            [dict(id=i + 1, name=f"client-{i}", secret_hash="x", disabled=False, created_at=NOW, weight=1, vtime=0.0) for i in range(clients)],
        )
        s.execute(insert(Blob).values(id=1, size=1, sha256="", created_at=NOW))
        s.execute(insert(Content).values(id=1, identifier=str(uuid.uuid4()), client_id=1, blob_id=1, filename="d.odt", doctype="odt", created_at=NOW))
    per = backlog // clients
    with db.session() as s:  # one transaction: the tags are the same as with one per client
        content = s.scalars(select(Content)).one()
        for c in range(clients):
            submission.enqueue_batch(
                s, NOW, NullMirror(), client_id=c + 1, content=content, application="LibreOffice Writer", version="7.4",
                count=per, fmt="pdf",
            )
    with db.engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        conn.commit()


def poll_latencies_ms(db: Database, polls: int) -> list[float]:
    policy = LeasePolicy()
    out = []
    for _ in range(polls):
        t0 = time.perf_counter()
        with db.read_session() as s:
            heads = claims.probe(s, WORKERS)
        assert heads, "backlog ran out"
        with db.session() as s:
            got = claims.claim(s, NOW, policy, owner="f", workers=WORKERS, pairs=[p for _, p in heads])
        out.append((time.perf_counter() - t0) * 1000)
        assert got is not None
    return out


def empty_poll_ms(db: Database, n: int = 500) -> float:
    idle = (WorkerSpec("Nobody", "1.0", frozenset({"odt"}), frozenset({"pdf"})),)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        with db.read_session() as s:
            assert claims.probe(s, idle) == []
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def pct(xs: list[float], p: float) -> float:
    ys = sorted(xs)
    return ys[min(len(ys) - 1, int(p / 100 * len(ys)))]


def run_one(pg: str, backlog: int, clients: int, polls: int) -> dict[str, object]:
    name = f"convhub_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = pg.rsplit("/", 1)[0] + f"/{name}"
        upgrade(url)
        db = Database(url, pool_size=5)
        t0 = time.monotonic()
        seed(db, backlog, clients)
        seeded = round(time.monotonic() - t0, 1)
        poll_latencies_ms(db, 100)  # warm-up: connections, statement caches
        lat = poll_latencies_ms(db, polls)
        res: dict[str, object] = {
            "clients": clients, "backlog": backlog, "polls": polls, "seed_seconds": seeded,
            "poll_ms_p50": round(statistics.median(lat), 3), "poll_ms_p99": round(pct(lat, 99), 3),
            "empty_poll_ms_p50": round(empty_poll_ms(db), 3),
        }
        db.dispose()
        return res
    finally:
        with admin.connect() as c:
            c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backlog", type=int, default=50_000)
    ap.add_argument("--polls", type=int, default=2000)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--out", default="bench/results/fairshare.json")
    args = ap.parse_args()
    results = [run_one(args.pg, args.backlog, n, args.polls) for n in (1, 1000)]
    for r in results:
        print("  ".join(f"{k}={v}" for k, v in r.items()))
    ratio = round(float(results[1]["poll_ms_p99"]) / float(results[0]["poll_ms_p99"]), 2)  # type: ignore[arg-type]
    print(f"p99 ratio (1,000 clients / 1 client) = {ratio} (target <= 2)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"bench": "fairshare", "p99_ratio": ratio, "results": results}, indent=2))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
