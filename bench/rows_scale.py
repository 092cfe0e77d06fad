"""Rows at scale (PostgreSQL): poll p99 by backlog size, counts and pages at 1M jobs, a 100k range
delete under polling, large documents end to end, and 10,000 leases expiring at once."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from kit import REDIS, ROOT, Row, bench_env, in_child, median, ms, pct, python, scratch_pg, tmpdir

T0 = datetime(2026, 1, 1, tzinfo=UTC)
POLL_PAIR = ("Poll App", "1")


def _base(url: str, clients: int = 3) -> Any:
    """Migrated database with `clients` client applications (ids 1..n), one blob/content each."""
    from sqlalchemy import text

    from app.db.engine import Database
    from app.db.migrate import upgrade

    upgrade(url)
    db = Database(url, pool_size=8)
    with db.engine.begin() as c:
        c.execute(text("INSERT INTO client_applications (id, name, secret_hash, disabled, created_at) "
                       "SELECT g, 'bench' || g, 'x', false, :t FROM generate_series(1, :n) g"), {"t": T0, "n": clients})
        c.execute(text("INSERT INTO blobs (id, size, sha256, created_at) SELECT g, 1, md5(g::text) || md5(g::text), :t "
                       "FROM generate_series(1, :n) g"), {"t": T0, "n": clients})
        c.execute(text("INSERT INTO contents (id, identifier, client_id, blob_id, filename, doctype, created_at) "
                       "SELECT g, gen_random_uuid()::text, g, g, 'd.odt', 'odt', :t FROM generate_series(1, :n) g"), {"t": T0, "n": clients})
    return db


def _jobs(db: Any, n: int, *, client: str = "1", pair: tuple[str, str] = POLL_PAIR, state: str = "0", start: int = 0, content: str | None = None) -> None:
    from sqlalchemy import text

    with db.engine.begin() as c:
        c.execute(text(f"""
            INSERT INTO jobs (guid, client_id, content_id, application, version, doctype, format, page_start, page_end,
                              state, submitted_at, updated_at, attempts, max_attempts)
            SELECT gen_random_uuid()::text, {client}, {content or client}, :a, :v, 'odt', 'pdf', 1, 0, {state},
                   :t + (g + :s) * interval '1 second', :t, 0, 3
            FROM generate_series(0, :n - 1) AS g"""), {"a": pair[0], "v": pair[1], "t": T0, "n": n, "s": start})
        c.execute(text("ANALYZE jobs"))


def _poller(db: Any, name: str, pair: tuple[str, str]) -> Any:
    from app.domain.leases import LeasePolicy
    from app.domain.matching import WorkerSpec
    from app.services import admin
    from app.services.auth import FactoryIdentity
    from app.services.poll import poll
    from app.services.ports import NullMirror

    w = WorkerSpec(pair[0], pair[1], frozenset({"odt"}), frozenset({"pdf"}))
    with db.session() as s:
        fid = admin.add_factory(s, T0, name, "bench-secret-1", [w]).id
    ident = FactoryIdentity(id=fid, name=name, workers=(w,), disabled=False)
    policy, mirror = LeasePolicy(), NullMirror()
    return lambda: poll(db, T0, policy, mirror, ident)


def poll_latencies(fn: Any, threads: int, seconds: float, stop: threading.Event | None = None) -> list[float]:
    lat: list[float] = []
    end = time.monotonic() + seconds

    def run() -> None:
        while time.monotonic() < end and not (stop and stop.is_set()):
            t0 = time.perf_counter()
            fn()
            lat.append(time.perf_counter() - t0)

    ts = [threading.Thread(target=run) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return lat


def backlog_rows(seconds: float) -> list[Row]:
    from sqlalchemy import text

    out: dict[str, list[float]] = {}
    with scratch_pg() as url:
        db = _base(url, clients=1001)
        poll = _poller(db, "bench-f", POLL_PAIR)
        _jobs(db, 1000)
        out["1k"] = poll_latencies(poll, 4, seconds)
        with db.engine.begin() as c:
            c.execute(text("UPDATE jobs SET state = 0, lease_owner = NULL, lease_token = NULL, lease_expires = NULL"))
        _jobs(db, 99_000, start=1000)
        out["100k"] = poll_latencies(poll, 4, seconds)
        # 1,000 clients each holding a job in flight, and the backlog spread over them.
        with db.engine.begin() as c:
            c.execute(text("UPDATE jobs SET state = 0, lease_owner = NULL, lease_token = NULL, lease_expires = NULL"))
            c.execute(text("UPDATE jobs SET client_id = 2 + (id % 1000), content_id = 2 + (id % 1000)"))
            c.execute(text("UPDATE jobs SET state = 1, lease_owner = 'other', lease_token = 't', lease_expires = :e "
                           "WHERE id IN (SELECT min(id) FROM jobs GROUP BY client_id)"), {"e": T0 + timedelta(days=1)})
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE jobs"))
        out["100k_1000_clients"] = poll_latencies(poll, 4, seconds)
        db.dispose()
    p99 = {k: pct(v, .99) for k, v in out.items()}
    ratio = p99["100k"] / p99["1k"]
    return [Row("scale", "poll p99 by backlog (service in-process, 4 threads)",
                {"p99_ms_1k": ms(p99["1k"]), "p99_ms_100k": ms(p99["100k"]), "p99_ms_100k_1000_clients": ms(p99["100k_1000_clients"]),
                 "p50_ms_100k": ms(pct(out["100k"], .5)), "ratio_100k/1k": round(ratio, 2)},
                "p99 at 100k <= 2 x at 1k", ratio <= 2)]


def million_rows(seconds: float, jobs: int) -> list[Row]:
    from sqlalchemy import text

    from app.services import client_views

    rows = []
    with scratch_pg() as url:
        db = _base(url)
        t = time.monotonic()
        with db.engine.begin() as c:  # 1M jobs of client 1 over the five wire states
            c.execute(text("""
                INSERT INTO jobs (guid, client_id, content_id, application, version, doctype, format, page_start, page_end,
                                  state, submitted_at, updated_at, attempts, max_attempts)
                SELECT gen_random_uuid()::text, 1, 1, 'Bulk App', '1', 'odt', 'pdf', 1, 0,
                       (ARRAY[3,3,3,3,3,3,4,0,0,1])[1 + g % 10], :t + g * interval '1 second', :t, 0, 3
                FROM generate_series(0, :n - 1) AS g"""), {"t": T0, "n": jobs})
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE jobs"))
        load_s = time.monotonic() - t
        counts_lat, page_lat = [], {}
        for _ in range(10):
            t = time.perf_counter()
            with db.read_session() as s:
                client_views.counts(s, 1)
            counts_lat.append(time.perf_counter() - t)
        for st in range(5):
            page_lat[st] = []
            for _ in range(10):
                t = time.perf_counter()
                with db.read_session() as s:
                    client_views.list_jobs(s, 1, state=st, limit=100)
                page_lat[st].append(time.perf_counter() - t)
        c50 = median(counts_lat)
        rows.append(Row("scale", f"counts and a page per state, {jobs:,} jobs",
                        {"load_s": round(load_s, 1), "counts_p50_ms": ms(c50),
                         **{f"page_state{st}_p50_ms": ms(median(v)) for st, v in page_lat.items()}},
                        "counts p50 <= 50 ms", c50 <= 0.05))

        # A 100k range delete by client 2 while another client's jobs are polled (4 threads).
        _jobs(db, 100_000, client="2", pair=("Delete App", "1"))
        _jobs(db, 50_000, client="3", pair=POLL_PAIR)
        poll = _poller(db, "bench-f", POLL_PAIR)
        base = poll_latencies(poll, 4, seconds)
        stop = threading.Event()
        during: list[float] = []
        th = threading.Thread(target=lambda: during.extend(poll_latencies(poll, 4, 120, stop)))
        th.start()
        time.sleep(0.5)
        t = time.perf_counter()
        with db.session() as s:
            res = client_views.delete_range(s, T0 + timedelta(days=400), 2, T0, T0 + timedelta(seconds=100_000))
        delete_s = time.perf_counter() - t
        time.sleep(0.2)
        stop.set()
        th.join()
        db.dispose()
    rows.append(Row("scale", "range delete of 100k jobs while another client's jobs are polled",
                    {"deleted": res.deleted, "delete_s": round(delete_s, 3), "poll_p99_ms_before": ms(pct(base, .99)),
                     "poll_p99_ms_during": ms(pct(during, .99)), "polls_during": len(during)},
                    "delete <= 2 s", delete_s <= 2))
    return rows


def large_rows(sizes: tuple[int, ...]) -> list[Row]:
    """bench_xmlrpc.py (poll, finish) and bench_soap_large.py (upload, result) per size, run as they are."""
    rows = []
    for n in sizes:
        vals: dict[str, Any] = {}
        note = ""
        for script, out in (("bench_soap_large.py", "soap_large.json"), ("bench_xmlrpc.py", "xmlrpc.json")):
            r = subprocess.run([python(), str(ROOT / "bench" / script), "--mib", str(n)], env=bench_env(), cwd=ROOT,
                               capture_output=True, text=True, timeout=1800)
            if r.returncode:
                note += f"{script} failed: {r.stderr.strip().splitlines()[-1:]} "
                continue
            vals.update(json.loads((ROOT / "bench" / "results" / out).read_text()))
        peak = max((vals.get(k, 0) for k in ("upload_peak_over_idle_mib", "poll_peak_over_idle_mib", "finish_peak_over_idle_mib",
                                               "result_peak_over_idle_mib")), default=0)
        speeds = {f"{stage}_MBps": round(n * 1.048576 / vals[f"{stage}_seconds"], 1)
                  for stage in ("upload", "poll", "finish", "result") if vals.get(f"{stage}_seconds")}
        rows.append(Row("scale", f"{n} MiB: upload -> poll -> finish -> result (SQLite, werkzeug subprocess)",
                        {**speeds, "peak_over_idle_mib": peak, "idle_rss_mib": vals.get("idle_rss_mib")},
                        "peak RSS over idle <= 4 x document (the 100 MiB row)", (peak <= 4 * n if vals else None) if n >= 100 else None, note.strip()))
    return rows


def lease_rows(leases: int) -> list[Row]:
    return in_child(_lease_rows, leases)  # type: ignore[no-any-return]


def _lease_rows(leases: int) -> list[Row]:
    from sqlalchemy import text

    from app.config import Settings
    from app.runtime import build_runtime
    from app.services import maintenance

    pair = (f"Lease App {uuid.uuid4().hex[:6]}", "1")
    with scratch_pg() as url, tmpdir() as tmp:
        db = _base(url, clients=1)
        with db.engine.begin() as c:  # one document per job, as real traffic has
            c.execute(text("INSERT INTO blobs (id, size, sha256, created_at) SELECT g, 1, md5(g::text) || md5((g+1)::text), :t "
                           "FROM generate_series(10, 9 + :n) g"), {"t": T0, "n": leases})
            c.execute(text("INSERT INTO contents (id, identifier, client_id, blob_id, filename, doctype, created_at) "
                           "SELECT g, gen_random_uuid()::text, 1, g, 'd.odt', 'odt', :t FROM generate_series(10, 9 + :n) g"), {"t": T0, "n": leases})
            c.execute(text(f"""
                INSERT INTO jobs (guid, client_id, content_id, application, version, doctype, format, page_start, page_end,
                                  state, submitted_at, updated_at, attempts, max_attempts, lease_owner, lease_token, lease_expires)
                SELECT gen_random_uuid()::text, 1, 10 + g, 'Lease App', '1', 'odt', 'pdf', 1, 0, 1,
                       :t, :t, 1, 3, 'factory-' || (g % 8), md5(g::text), :t + interval '1 second'
                FROM generate_series(0, {leases} - 1) AS g"""), {"t": T0})
            c.execute(text("ANALYZE"))
        db.dispose()
        with db.engine.begin() as c:
            c.execute(text("UPDATE jobs SET application = :a WHERE application = 'Lease App'"), {"a": pair[0]})
        settings = Settings(data_dir=tmp, database_url=url, broker_url=REDIS, log_level="WARNING")
        rt = build_runtime(settings)
        try:
            rt.mirror.declare([pair])
            t = time.perf_counter()
            done = maintenance.reclaim_all(rt.db, T0 + timedelta(minutes=10), rt.notifier, rt.mirror)  # beat's convhub.reclaim
            reclaim_s = time.perf_counter() - t
            with rt.db.read_session() as s:
                queued = s.scalar(text("SELECT count(*) FROM jobs WHERE state = 0"))
            left = rt.mirror.queue_length(*pair)
            rt.mirror.rebuild(*pair, [])  # leave the shared broker as it was
        finally:
            rt.close()
    interval = settings.reclaim_interval_seconds
    return [Row("scale", f"{leases:,} leases expiring at once, beat's reclaim (PostgreSQL + Redis)",
                {"reclaimed": len(done), "queued_after": queued, "messages_published": left, "reclaim_s": round(reclaim_s, 2),
                 "worst_case_s": round(interval + reclaim_s, 1), "beat_interval_s": interval},
                "all pollable again within one beat interval (reclaim <= interval)", queued == leases and reclaim_s <= interval)]
