"""What the Redis mirror costs a claim: 16 concurrent claimers over a 100k-job backlog on PostgreSQL,
with the Redis mirror (every claim takes its job's message off a 100k-message queue) and without it.

Each claimer runs the poll service (`app.services.poll.poll`) in a loop, as a web worker does. The
mirror run goes first, so its queue and backlog are aligned (the no-mirror run leaves the messages
of the jobs it claims behind). Prints both rates and their ratio and writes JSON (default
bench/results/mirror.json). Not a test.

    .venv/bin/python bench/bench_mirror.py [--backlog 100000] [--threads 16] [--seconds 10]
        [--pg postgresql://postgres@127.0.0.1:5432/postgres] [--redis redis://127.0.0.1:6379/13]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
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
from app.services import admin
from app.services.auth import FactoryIdentity
from app.services.poll import poll
from app.services.ports import Mirror, NullMirror

PAIR = ("LibreOffice Writer", "7.4")
WORKER = WorkerSpec(PAIR[0], PAIR[1], frozenset({"odt"}), frozenset({"pdf"}))
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def seed_db(db: Database, backlog: int) -> list[int]:
    with db.session() as s:
        s.execute(insert(ClientApplication).values(id=1, name="bench", secret_hash="x", disabled=False, created_at=NOW))
        s.execute(insert(Blob).values(id=1, size=1, sha256="", created_at=NOW))
        s.execute(insert(Content).values(id=1, identifier=str(uuid.uuid4()), client_id=1, blob_id=1, filename="d.odt", doctype="odt", created_at=NOW))
    row = dict(client_id=1, content_id=1, application=PAIR[0], version=PAIR[1], doctype="odt", format="pdf",
               page_start=1, page_end=0, state=0, submitted_at=NOW, updated_at=NOW, attempts=0, max_attempts=3)
    for i in range(0, backlog, 10000):
        with db.session() as s:
            s.execute(insert(Job), [dict(row, guid=str(uuid.uuid4())) for _ in range(min(10000, backlog - i))])
    with db.engine.connect() as c:
        c.execute(text("ANALYZE"))
        c.commit()
    with db.read_session() as s:
        return [int(i) for (i,) in s.execute(text("SELECT id FROM jobs ORDER BY submitted_at, id"))]


def seed_queue(mirror, redis_url: str, ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    """The pair's queue with one message per job, oldest at the head: the mirror publishes the
    first one; the others are that real message with its job id, body and task id replaced (a
    100k publish loop would take minutes), pushed in pipelines."""
    import redis

    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    mirror.declare([PAIR])
    mirror.publish(ids[0], *PAIR)
    key = r.keys("convert.*")[0]
    template = json.loads(r.lpop(key))  # type: ignore[arg-type]
    body = json.loads(base64.b64decode(template["body"]))
    pipe = r.pipeline(transaction=False)
    for n, jid in enumerate(ids, 1):
        env = json.loads(json.dumps(template))
        body[0] = [jid]
        env["body"] = base64.b64encode(json.dumps(body).encode()).decode()
        task_id = str(uuid.uuid4())
        env["headers"].update(id=task_id, root_id=task_id, argsrepr=f"[{jid}]")
        env["properties"].update(correlation_id=task_id, delivery_tag=str(uuid.uuid4()))
        pipe.lpush(key, json.dumps(env))
        if n % 5000 == 0:
            pipe.execute()
    pipe.execute()
    assert r.llen(key) == len(ids)
    r.close()


def claims_per_second(db: Database, mirror: Mirror, factory: FactoryIdentity, threads: int, seconds: float) -> float:
    policy = LeasePolicy()
    count = [0] * threads
    stop = time.monotonic() + seconds

    def run(n: int) -> None:
        while time.monotonic() < stop:
            if poll(db, NOW, policy, mirror, factory) is None:
                return
            count[n] += 1

    ts = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(count) / (time.monotonic() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--redis", default=os.environ.get("CONVHUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    ap.add_argument("--out", default="bench/results/mirror.json")
    args = ap.parse_args()

    from app.config import Settings
    from tasks.celery_app import make_celery
    from tasks.mirror import KombuMirror

    name = f"convhub_bench_{uuid.uuid4().hex[:8]}"
    pg_admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    with pg_admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = args.pg.rsplit("/", 1)[0] + f"/{name}"
    try:
        upgrade(url)
        db = Database(url, pool_size=args.threads + 4)
        t0 = time.monotonic()
        ids = seed_db(db, args.backlog)
        with db.session() as s:
            f = admin.add_factory(s, NOW, "bench-factory", "bench-secret-1", [WORKER])
            factory = FactoryIdentity(id=f.id, name=f.name, workers=(WORKER,), disabled=False)
        with tempfile.TemporaryDirectory() as tmp:
            celery = make_celery(Settings(data_dir=Path(tmp), database_url=url, broker_url=args.redis))
            celery.conf.broker_pool_limit = args.threads + 4
            mirror = KombuMirror(celery)
            seed_queue(mirror, args.redis, ids)
            seed_s = time.monotonic() - t0
            with_mirror = claims_per_second(db, mirror, factory, args.threads, args.seconds)
            left = mirror.queue_length(*PAIR)
            without = claims_per_second(db, NullMirror(), factory, args.threads, args.seconds)
            with db.read_session() as s:
                claimed = s.scalar(text("SELECT count(*) FROM jobs WHERE state <> 0"))
            celery.pool.force_close_all()
        db.dispose()
    finally:
        with pg_admin.connect() as c:
            c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    result = {
        "bench": "mirror",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "database": "postgresql",
        "broker": "redis",
        "backlog": args.backlog,
        "threads": args.threads,
        "seconds_per_run": args.seconds,
        "seed_seconds": round(seed_s, 1),
        "claims_per_s_with_mirror": round(with_mirror, 1),
        "claims_per_s_without_mirror": round(without, 1),
        "ratio": round(with_mirror / without, 3) if without else None,
        "queue_left_after_mirror_run": left,
        "jobs_claimed_total": claimed,
    }
    print(f"16 claimers, {args.backlog} queued: with mirror {result['claims_per_s_with_mirror']}/s, "
          f"without {result['claims_per_s_without_mirror']}/s, ratio {result['ratio']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
