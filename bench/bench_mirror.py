"""What the mirror costs a claim, per broker: 16 concurrent claimers over a 100k-job backlog on
PostgreSQL, with the mirror (every claim takes its job's message off a 100k-message queue) and
without it, on Redis, RabbitMQ and the embedded SQL broker (kombu's SQLAlchemy transport on SQLite,
as the embedded default builds it: `sqla+sqlite:///<data dir>/broker.db`).

Each claimer runs the poll service (`app.services.poll.poll`) in a loop, as a web worker does. Per
broker: the queue is filled with one message per QUEUED job (oldest at the head), the mirror run
goes first, then every job goes back to QUEUED and the no-mirror run follows on the same backlog.
The pair gets a unique name per run, so its queue is the bench's own; it is deleted afterwards.
Prints the rates and their ratio per broker and writes JSON (default bench/results/mirror.json).
Not a test.

    .venv/bin/python bench/bench_mirror.py [--brokers redis,amqp,sql] [--backlog 100000]
        [--threads 16] [--seconds 10] [--pg postgresql://postgres@127.0.0.1:5432/postgres]
        [--redis redis://127.0.0.1:6379/13] [--amqp amqp://guest:guest@127.0.0.1:5672//] [--sync-ab]

`--sync-ab` (sql): then the broker alone, 16 threads owing removals of head messages with no
database work (each mirror's drain thread does them), synchronous FULL (sqlite3's default) and
NORMAL (convhub's broker engine), and NORMAL with the passes queued on the mirror's per-file lock
(convhub's default), alternated on the same file. Since removals are drained on one thread per
mirror, the lock only matters where two mirrors in one process share a file.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import platform
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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

# A pair of its own per run: its queue (convert.bench-<hex>.7-4) is nobody else's on a shared broker.
PAIR = (f"Bench {uuid.uuid4().hex[:8]}", "7.4")
WORKER = WorkerSpec(PAIR[0], PAIR[1], frozenset({"odt"}), frozenset({"pdf"}))
NOW = datetime(2026, 1, 1, tzinfo=UTC)
BROKERS = ("redis", "amqp", "sql")


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


def requeue_all(url: str) -> None:
    """Every claimed job back to QUEUED (and the table vacuumed): the next run sees the same backlog."""
    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text("UPDATE jobs SET state = 0, lease_owner = NULL, lease_token = NULL, lease_expires = NULL, attempts = 0 WHERE state <> 0"))
        c.execute(text("VACUUM ANALYZE jobs"))
    eng.dispose()


# ------------------------------------------------------------------ filling a queue with 100k messages
# The mirror publishes the first job's message; the others are that real message with its job id,
# body and task id replaced (a 100k publish loop through Celery would take minutes).


def _retagged(headers: dict[str, Any], body: list[Any], jid: int) -> tuple[dict[str, Any], bytes, str]:
    task_id = str(uuid.uuid4())
    body[0] = [jid]
    return dict(headers, id=task_id, root_id=task_id, argsrepr=f"[{jid}]"), json.dumps(body).encode(), task_id


def seed_redis(mirror, conn, ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    import redis

    r, key = redis.Redis.from_url(conn.as_uri(include_password=True)), conn.default_channel._q_for_pri(mirror_queue_name(), 0)
    template = json.loads(r.lpop(key))
    body = json.loads(base64.b64decode(template["body"]))
    pipe = r.pipeline(transaction=False)
    for n, jid in enumerate(ids, 1):
        headers, raw, task_id = _retagged(template["headers"], body, jid)
        env = dict(template, headers=headers, body=base64.b64encode(raw).decode())
        env["properties"] = dict(template["properties"], correlation_id=task_id, delivery_tag=str(uuid.uuid4()))
        pipe.lpush(key, json.dumps(env))
        if n % 5000 == 0:
            pipe.execute()
    pipe.execute()
    r.close()


def seed_amqp(mirror, conn, ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    import amqp

    name = mirror_queue_name()
    channel = conn.default_channel
    first = channel.basic_get(name, no_ack=True)
    props = dict(first.properties)
    headers = props.pop("application_headers")
    body = json.loads(first.body)
    for jid in ids:
        h, raw, task_id = _retagged(headers, body, jid)
        msg = amqp.Message(raw, application_headers=h, **dict(props, correlation_id=task_id))
        channel.basic_publish(msg, exchange=name, routing_key=name)
    deadline = time.monotonic() + 120
    while mirror.queue_length(*PAIR) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.2)


def seed_sql(mirror, conn, ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    channel = conn.default_channel
    model, session = channel.message_cls, channel.session
    first = session.query(model).one()
    template, queue_id, sent_at = json.loads(first.payload), first.queue_id, first.sent_at
    session.delete(first)
    session.commit()
    body = json.loads(base64.b64decode(template["body"]))
    rows = []
    for jid in ids:
        headers, raw, task_id = _retagged(template["headers"], body, jid)
        env = dict(template, headers=headers, body=base64.b64encode(raw).decode())
        env["properties"] = dict(template["properties"], correlation_id=task_id, delivery_tag=str(uuid.uuid4()))
        rows.append({"payload": json.dumps(env), "queue_id": queue_id, "visible": True, "timestamp": sent_at, "version": 1})
    table = model.__table__
    for i in range(0, len(rows), 5000):
        session.execute(table.insert(), rows[i : i + 5000])
    session.commit()


SEEDERS = {"redis": seed_redis, "amqp": seed_amqp, "sql": seed_sql}


def mirror_queue_name() -> str:
    from tasks.celery_app import pair_queue

    return pair_queue(*PAIR).name


def fill_queue(mirror, celery, broker: str, ids: list[int]) -> None:  # type: ignore[no-untyped-def]
    with celery.pool.acquire(block=True) as conn:
        mirror.declare([PAIR])
        mirror._declare_on_broker(conn, *PAIR).purge()
    mirror.publish(ids[0], *PAIR)
    with celery.pool.acquire(block=True) as conn:
        SEEDERS[broker](mirror, conn, ids)
    have = mirror.queue_length(*PAIR)
    assert have == len(ids), f"{broker}: {have} messages queued, {len(ids)} wanted"


def drop_queue(celery, broker: str) -> None:  # type: ignore[no-untyped-def]
    from tasks.celery_app import pair_queue

    q = pair_queue(*PAIR)
    with celery.pool.acquire(block=True) as conn:
        bound = q.bind(conn.default_channel)
        bound.purge()
        bound.delete()
        if broker == "amqp":
            q.exchange.bind(conn.default_channel).delete()


# ------------------------------------------------------------------ the runs


def claims_per_second(db: Database, mirror: Mirror, factory: FactoryIdentity, threads: int, seconds: float) -> tuple[float, int]:
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
    # RabbitMQ's removals run on the mirror's drain thread, beside the claimers (its CPU is counted
    # with theirs); the time until it has done what the claims owed counts too.
    settle = getattr(mirror, "settle", None)
    if settle is not None:
        settle(60)
    return sum(count) / (time.monotonic() - t0), sum(count)


def removals_per_second(mirror: Any, ids: Any, threads: int, seconds: float) -> dict[str, float]:
    """`threads` threads take the next job id and remove its message (`mirror.remove`), with no
    database work: what the broker alone costs a claim. `ids` is a shared iterator in queue order,
    so each removal finds its message among the head rows. The latencies are the claims' (owing a
    removal to the mirror's drain); the rate counts until the drain has done them."""
    lock, lat = threading.Lock(), []
    stop = time.monotonic() + seconds

    def run() -> None:
        while time.monotonic() < stop:
            with lock:
                jid = next(ids, None)
            if jid is None:
                return
            t0 = time.perf_counter()
            mirror.remove(jid, *PAIR, lambda ids: set(ids))
            lat.append(time.perf_counter() - t0)

    ts = [threading.Thread(target=run) for _ in range(threads)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    mirror.settle(60)  # removals are the drain thread's: the rate counts until they are done
    lat.sort()
    return {"removals_per_s": round(len(lat) / (time.monotonic() - t0), 1),
            "p50_ms": round(lat[len(lat) // 2] * 1000, 2) if lat else 0.0, "p99_ms": round(lat[int(len(lat) * .99)] * 1000, 2) if lat else 0.0}


def sql_sync_ab(settings: Any, mirror: Any, ids: list[int], threads: int, seconds: float, rounds: int = 2) -> dict[str, Any]:
    """The embedded broker's removals alone, alternated on the same queue file in the same minute:
    synchronous=FULL (sqlite3's default: an fsync per commit) and NORMAL (convhub's engine), each
    mirror's drain passes waiting on SQLite's busy handler, and NORMAL with them queued on the
    mirror's per-file lock (convhub's default).
    The FULL engine is kombu's plain one, reached through another spelling of the file's path
    (kombu caches one engine per URL)."""
    from tasks.celery_app import make_celery
    from tasks.mirror import KombuMirror

    path = settings.broker_url.removeprefix("sqla+sqlite:///")
    alias = dataclasses.replace(settings, broker_url="sqla+sqlite:///" + str(Path(path).parent) + "/./" + Path(path).name)
    full_app = make_celery(alias)
    full_app.conf.broker_transport_options = {"connect_args": {"timeout": 30}}
    full_app.conf.broker_pool_limit = threads + 4
    arms = {
        "FULL": KombuMirror(full_app, queue_sqlite_writers=False),  # main before this change
        "NORMAL": KombuMirror(mirror.app, queue_sqlite_writers=False),
        "NORMAL, writers queued": mirror,  # convhub's default now
    }
    it = iter(ids)
    out: dict[str, list[dict[str, float]]] = {k: [] for k in arms}
    try:
        for _ in range(rounds):
            for name, arm in arms.items():
                out[name].append(removals_per_second(arm, it, threads, seconds))
    finally:
        full_app.pool.force_close_all()
    return out


def bench_broker(broker: str, broker_url: str, url: str, db: Database, factory: FactoryIdentity, ids: list[int], args, tmp: Path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from app.config import Settings
    from tasks.celery_app import make_celery, prepare_embedded_broker
    from tasks.mirror import KombuMirror

    settings = Settings(data_dir=tmp, database_url=url, broker_url=broker_url)
    prepare_embedded_broker(settings)  # as build_runtime does
    celery = make_celery(settings)
    celery.conf.broker_pool_limit = args.threads + 4
    mirror = KombuMirror(celery)
    try:
        t0 = time.monotonic()
        fill_queue(mirror, celery, broker, ids)
        seed_s = time.monotonic() - t0
        with_mirror, claimed = claims_per_second(db, mirror, factory, args.threads, args.seconds)
        left = mirror.queue_length(*PAIR)
        requeue_all(url)
        without, _ = claims_per_second(db, NullMirror(), factory, args.threads, args.seconds)
        requeue_all(url)
        sync_ab = sql_sync_ab(settings, mirror, ids[claimed:], args.threads, args.seconds) if broker == "sql" and args.sync_ab else None
    finally:
        drop_queue(celery, broker)
        celery.pool.force_close_all()
    return {
        "broker": broker,
        "seed_seconds": round(seed_s, 1),
        "claims_per_s_with_mirror": round(with_mirror, 1),
        "claims_per_s_without_mirror": round(without, 1),
        "ratio": round(with_mirror / without, 3) if without else None,
        "claimed_in_mirror_run": claimed,
        "queue_left_after_mirror_run": left,
        "stale_messages_left": None if left is None else left - (len(ids) - claimed),
        **({"removals_alone_by_synchronous": sync_ab} if sync_ab else {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", default=",".join(BROKERS), help="comma-separated, of: " + ", ".join(BROKERS))
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--pg", default=os.environ.get("CONVHUB_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--redis", default=os.environ.get("CONVHUB_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13"))
    ap.add_argument("--amqp", default=os.environ.get("CONVHUB_BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"))
    ap.add_argument("--out", default="bench/results/mirror.json")
    ap.add_argument("--sync-ab", action="store_true", help="sql: also time removals alone, synchronous NORMAL vs FULL, alternated")
    args = ap.parse_args()
    brokers = [b for b in args.brokers.split(",") if b]
    unknown = set(brokers) - set(BROKERS)
    if unknown:
        ap.error(f"unknown broker(s): {', '.join(sorted(unknown))}")

    name = f"convhub_bench_{uuid.uuid4().hex[:8]}"
    pg_admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    with pg_admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = args.pg.rsplit("/", 1)[0] + f"/{name}"
    runs = []
    try:
        upgrade(url)
        db = Database(url, pool_size=args.threads + 4)
        ids = seed_db(db, args.backlog)
        with db.session() as s:
            f = admin.add_factory(s, NOW, "bench-factory", "bench-secret-1", [WORKER])
            factory = FactoryIdentity(id=f.id, name=f.name, workers=(WORKER,), disabled=False)
        with tempfile.TemporaryDirectory() as tmp:
            for broker in brokers:
                broker_url = {"redis": args.redis, "amqp": args.amqp, "sql": f"sqla+sqlite:///{Path(tmp) / 'broker.db'}"}[broker]
                run = bench_broker(broker, broker_url, url, db, factory, ids, args, Path(tmp))
                runs.append(run)
                print(f"{broker:6} {args.threads} claimers, {args.backlog} queued: with mirror {run['claims_per_s_with_mirror']}/s, "
                      f"without {run['claims_per_s_without_mirror']}/s, ratio {run['ratio']} "
                      f"(stale messages left: {run['stale_messages_left']})", flush=True)
                for arm, rs in run.get("removals_alone_by_synchronous", {}).items():
                    print(f"       removals alone, synchronous={arm}: " + "; ".join(f"{r['removals_per_s']}/s p50 {r['p50_ms']} ms p99 {r['p99_ms']} ms" for r in rs), flush=True)
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
        "backlog": args.backlog,
        "threads": args.threads,
        "seconds_per_run": args.seconds,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
