"""Claim rows (no HTTP, PostgreSQL, 100k backlog over the 3 pairs one factory serves): convhub's poll
service in-process, the same claim as one raw SQL statement, and pgqueuer 1.6 (batch 1 and 10),
at 1/4/16 threads and 4 processes. Each run starts from the full backlog."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kit import Row, scratch_pg

PAIRS = [("LibreOffice Writer", "7.4", "odt"), ("LibreOffice Calc", "7.4", "ods"), ("LibreOffice Impress", "7.4", "odp")]
NOW = datetime(2026, 1, 1, tzinfo=UTC)
SHAPES = [("1 thread", 1, 1), ("4 threads", 4, 1), ("16 threads", 16, 1), ("4 processes", 1, 4)]
TARGET_SHAPES = [SHAPES[0], SHAPES[3]]  # the shapes the targets name (--quick runs only these)


def seed(url: str, backlog: int) -> None:
    from sqlalchemy import insert, text

    from app.db.engine import Database
    from app.db.migrate import upgrade
    from app.db.models import Blob, ClientApplication, Content
    from app.domain.matching import WorkerSpec
    from app.services import admin

    upgrade(url)
    db = Database(url)
    with db.session() as s:
        s.execute(insert(ClientApplication).values(id=1, name="bench", secret_hash="x", disabled=False, created_at=NOW))
        s.execute(insert(Blob).values(id=1, size=1, sha256="", created_at=NOW))
        s.execute(insert(Content).values(id=1, identifier=str(uuid.uuid4()), client_id=1, blob_id=1, filename="d.odt", doctype="odt", created_at=NOW))
        admin.add_factory(s, NOW, "bench-f", "bench-secret-1", [WorkerSpec(a, v, frozenset({d}), frozenset({"pdf"})) for a, v, d in PAIRS])
    eng = db.engine
    with eng.begin() as c:
        for i, (a, v, d) in enumerate(PAIRS):
            c.execute(text("""
                INSERT INTO jobs (guid, client_id, content_id, application, version, doctype, format, page_start, page_end,
                                  state, submitted_at, updated_at, attempts, max_attempts)
                SELECT gen_random_uuid()::text, 1, 1, :a, :v, :d, 'pdf', 1, 0, 0, :t + (g * 3 + :i) * interval '1 ms', :t, 0, 3
                FROM generate_series(0, :n - 1) AS g"""), {"a": a, "v": v, "d": d, "t": NOW, "i": i, "n": backlog // 3})
        c.execute(text("ANALYZE jobs"))
    db.dispose()


def reset(url: str) -> None:
    """Every claimed job back to QUEUED, and the table vacuumed, so each run sees the same backlog."""
    from sqlalchemy import create_engine, text

    eng = create_engine(url, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text("UPDATE jobs SET state = 0, lease_owner = NULL, lease_token = NULL, lease_expires = NULL, attempts = 0 WHERE state <> 0"))
        c.execute(text("VACUUM ANALYZE jobs"))
    eng.dispose()


# ------------------------------------------------------------------ claimers: (url, index) -> a loop


def service_loop(url: str, threads: int, start_at: float, stop_at: float) -> int:
    from sqlalchemy import text

    from app.db.engine import Database
    from app.domain.leases import LeasePolicy
    from app.domain.matching import WorkerSpec
    from app.services.auth import FactoryIdentity
    from app.services.poll import poll
    from app.services.ports import NullMirror

    workers = tuple(WorkerSpec(a, v, frozenset({d}), frozenset({"pdf"})) for a, v, d in PAIRS)
    db = Database(url, pool_size=threads + 2)
    with db.session() as s:
        fid = s.execute(text("SELECT id FROM factories WHERE name = 'bench-f'")).scalar_one()
    factory = FactoryIdentity(id=fid, name="bench-f", workers=workers, disabled=False)
    policy, mirror = LeasePolicy(), NullMirror()
    counts = [0] * threads

    def run(n: int) -> None:
        _wait(start_at)
        while time.time() < stop_at:
            if poll(db, NOW, policy, mirror, factory) is not None:
                counts[n] += 1

    _threads(run, threads)
    db.dispose()
    return sum(counts)


# The claim's order is the fair-share tag's, on ix_jobs_queued_vtag (application, version, vtag, id)
# WHERE state = 0: an index walk. (Ordered by submitted_at, as before farm policy, it sorted the pair's
# whole backlog per claim: 36 claims/s at 100k queued.)
RAW = """
UPDATE jobs SET state = 1, lease_owner = %s, lease_token = md5(random()::text), attempts = attempts + 1,
       lease_expires = now() + interval '300 seconds', updated_at = now()
WHERE id = (SELECT id FROM jobs WHERE state = 0 AND follows_job_id IS NULL AND application = %s AND version = %s
            ORDER BY vtag, id LIMIT 1 FOR UPDATE SKIP LOCKED)
RETURNING id, guid, content_id, doctype, format
"""


def raw_loop(url: str, threads: int, start_at: float, stop_at: float) -> int:
    import psycopg

    counts = [0] * threads
    dsn = url.replace("postgresql://", "postgres://")

    def run(n: int) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            i = n
            _wait(start_at)
            while time.time() < stop_at:
                a, v, _ = PAIRS[i % 3]
                i += 1
                if conn.execute(RAW, ("bench-f", a, v), prepare=True).fetchone() is not None:
                    counts[n] += 1

    _threads(run, threads)
    return sum(counts)


def pgqueuer_loop(url: str, threads: int, start_at: float, stop_at: float, batch: int) -> int:
    import asyncpg
    from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
    from pgqueuer.queries import EntrypointExecutionParameter, Queries

    counts = [0] * threads
    dsn = url.replace("postgresql://", "postgres://")

    def run(n: int) -> None:
        async def main() -> None:
            conn = await asyncpg.connect(dsn)
            q = Queries(AsyncpgDriver(conn))
            qm_id = uuid.uuid4()
            eps = {"convert": EntrypointExecutionParameter(concurrency_limit=0)}
            from datetime import timedelta

            _wait(start_at)
            while time.time() < stop_at:
                jobs = await q.dequeue(batch_size=batch, entrypoints=eps, queue_manager_id=qm_id,  # type: ignore[arg-type]
                                       global_concurrency_limit=None, heartbeat_timeout=timedelta(seconds=30))
                counts[n] += len(jobs)
            await conn.close()

        asyncio.run(main())

    _threads(run, threads)
    return sum(counts)


def pgqueuer_seed(url: str, backlog: int) -> None:
    import asyncpg
    from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
    from pgqueuer.queries import Queries

    async def main() -> None:
        conn = await asyncpg.connect(url.replace("postgresql://", "postgres://"))
        q = Queries(AsyncpgDriver(conn))
        if not await q.schema_is_installed():
            await q.install()
        await conn.execute("TRUNCATE pgqueuer")
        for i in range(0, backlog, 10000):
            n = min(10000, backlog - i)
            await q.enqueue(["convert"] * n, [b"%d" % (i + k) for k in range(n)], [0] * n)
        await conn.execute("ANALYZE pgqueuer")
        await conn.close()

    asyncio.run(main())


def _wait(start_at: float) -> None:
    while time.time() < start_at:
        time.sleep(0.005)


def _threads(run: Callable[[int], None], n: int) -> None:
    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def _proc(fn: Callable[..., int], args: tuple[Any, ...], q: Any) -> None:
    try:
        q.put(fn(*args))
    except Exception as exc:  # noqa: BLE001
        q.put(f"{type(exc).__name__}: {exc}")


def rate(fn: Callable[..., int], url: str, threads: int, procs: int, seconds: float, *extra: Any) -> float:
    """Claims/s of `procs` processes x `threads` threads, each running fn over the same window."""
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    start_at = time.time() + 1.5  # imports, connections and pools are set up before the window
    stop_at = start_at + seconds
    ps = [ctx.Process(target=_proc, args=(fn, (url, threads, start_at, stop_at, *extra), q)) for _ in range(procs)]
    for p in ps:
        p.start()
    got = [q.get(timeout=seconds + 120) for _ in ps]
    for p in ps:
        p.join(10)
    bad = [g for g in got if isinstance(g, str)]
    if bad:
        raise RuntimeError(bad[0])
    return sum(got) / seconds


def claims(seconds: float, backlog: int, ctx: dict[str, Any], shapes: list[tuple[str, int, int]] = SHAPES) -> list[Row]:
    results: dict[str, dict[str, float]] = {}
    with scratch_pg() as url:
        seed(url, backlog)
        systems: list[tuple[str, Callable[..., int], tuple[Any, ...]]] = [("convhub poll service", service_loop, ()), ("raw one-statement claim", raw_loop, ())]
        try:
            import pgqueuer  # noqa: F401

            pgqueuer_seed(url, backlog)
            systems += [("pgqueuer 1.6 batch 1", pgqueuer_loop, (1,)), ("pgqueuer 1.6 batch 10", pgqueuer_loop, (10,))]
        except ImportError:
            pass
        for name, fn, extra in systems:
            results[name] = {}
            for shape, threads, procs in shapes:
                if fn is pgqueuer_loop:
                    pgqueuer_seed(url, backlog)
                else:
                    reset(url)
                results[name][shape] = round(rate(fn, url, threads, procs, seconds, *extra), 1)
    rows = []
    svc, raw = results["convhub poll service"], results["raw one-statement claim"]
    pq1 = results.get("pgqueuer 1.6 batch 1")
    for name, r in results.items():
        row = Row("claims", f"{name}, {backlog:,} queued", {f"{k}/s": v for k, v in r.items()})
        if name == "convhub poll service":
            ratios = {}
            for shape in ("1 thread", "4 processes"):
                ratios[f"x_raw_{shape.replace(' ', '_')}"] = round(svc[shape] / raw[shape], 3) if raw[shape] else None
                if pq1:
                    ratios[f"x_pgq1_{shape.replace(' ', '_')}"] = round(svc[shape] / pq1[shape], 3) if pq1[shape] else None
            row.values.update(ratios)
            row.target = ">= 2 x pgqueuer batch 1 and >= 0.5 x raw, at 1 thread and 4 processes"
            ok = [v is not None and v >= (2 if "pgq" in k else 0.5) for k, v in ratios.items()]
            row.met = all(ok) if pq1 else None
        rows.append(row)
    ctx["claims"] = results
    return rows
