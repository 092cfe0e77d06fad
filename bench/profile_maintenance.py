"""Profile of the scale rows' maintenance work on PostgreSQL (issue 14): counts of one client and a
100k range delete over `--jobs` jobs (rows_scale.million_rows' data), with each statement's time and,
with `--explain`, EXPLAIN (ANALYZE, BUFFERS, WAL) of the range delete's DELETE and, for comparison,
of the soft-delete UPDATE it replaced (migration 0009), both rolled back.

    .venv/bin/python bench/profile_maintenance.py --jobs 1000000 [--explain]

The 10,000-lease reclaim row alone:
    cd bench && ../.venv/bin/python -c "import rows_scale; print(rows_scale.lease_rows(10_000))"
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from kit import scratch_pg  # noqa: E402
from rows_scale import POLL_PAIR, T0, _base, _jobs  # noqa: E402
from sqlalchemy import event, text  # noqa: E402

from app.services import client_views  # noqa: E402

BULK = """
    INSERT INTO jobs (guid, client_id, content_id, application, version, doctype, format, page_start, page_end,
                      state, submitted_at, updated_at, attempts, max_attempts)
    SELECT gen_random_uuid()::text, 1, 1, 'Bulk App', '1', 'odt', 'pdf', 1, 0,
           (ARRAY[3,3,3,3,3,3,4,0,0,1])[1 + g % 10], :t + g * interval '1 second', :t, 0, 3
    FROM generate_series(0, :n - 1) AS g"""
WINDOW = "client_id = 2 AND submitted_at >= :a AND submitted_at < :b AND state IN (0, 3, 4)"
EXPLAINED = {
    "range delete (DELETE, purge_items)": (
        "EXPLAIN (ANALYZE, BUFFERS, WAL) WITH gone AS (DELETE FROM jobs WHERE " + WINDOW + " RETURNING id, content_id), "
        "res AS (DELETE FROM results USING gone WHERE results.job_id = gone.id RETURNING results.blob_id), "
        "items AS (INSERT INTO purge_items (content_id, blob_id) SELECT DISTINCT content_id, NULL::bigint FROM gone "
        "UNION ALL SELECT DISTINCT NULL::bigint, blob_id FROM res RETURNING id) "
        "SELECT count(*) FROM gone"
    ),
    "before 0009: soft delete (UPDATE to DELETED)": (
        "EXPLAIN (ANALYZE, BUFFERS, WAL) UPDATE jobs SET state = 9, updated_at = now() WHERE " + WINDOW
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=1_000_000)
    ap.add_argument("--explain", action="store_true")
    args = ap.parse_args()
    with scratch_pg() as url:
        db = _base(url)
        t = time.monotonic()
        with db.engine.begin() as c:
            c.execute(text(BULK), {"t": T0, "n": args.jobs})
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
            c.execute(text("VACUUM ANALYZE jobs"))
        print(f"load {time.monotonic() - t:.1f} s")
        lat = []
        for _ in range(10):
            t = time.perf_counter()
            with db.read_session() as s:
                got = client_views.counts(s, 1)
            lat.append(time.perf_counter() - t)
        print(f"counts p50 {sorted(lat)[5] * 1000:.1f} ms {got}")
        _jobs(db, 100_000, client="2", pair=("Delete App", "1"))
        _jobs(db, 50_000, client="3", pair=POLL_PAIR)
        stmts: list[tuple[float, str]] = []

        def before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
            conn.info["t0"] = time.perf_counter()

        def after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
            stmts.append((time.perf_counter() - conn.info["t0"], " ".join(statement.split())[:100]))

        event.listen(db.engine, "before_cursor_execute", before)
        event.listen(db.engine, "after_cursor_execute", after)
        t = time.perf_counter()
        with db.session() as s:
            res = client_views.delete_range(s, T0 + timedelta(days=400), 2, T0, T0 + timedelta(seconds=100_000))
        print(f"delete_range {time.perf_counter() - t:.2f} s {res}")
        for d, st in stmts:
            print(f"  {d:7.3f} s {st}")
        event.remove(db.engine, "before_cursor_execute", before)
        event.remove(db.engine, "after_cursor_execute", after)
        if args.explain:  # the same window filled again, each statement explained and rolled back
            _jobs(db, 100_000, client="2", pair=("Delete App", "1"))
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                c.execute(text("VACUUM ANALYZE jobs"))
            for label, stmt in EXPLAINED.items():
                print(f"-- {label}")
                with db.engine.connect() as c:
                    for (line,) in c.execute(text(stmt), {"a": T0, "b": T0 + timedelta(seconds=100_000)}):
                        print(line)
                    c.rollback()
        db.dispose()


if __name__ == "__main__":
    main()
