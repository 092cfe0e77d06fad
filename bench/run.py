"""`make bench`: every row side by side in one run, one table, bench/results/latest.json.

    .venv/bin/python bench/run.py                 # everything (make bench)
    .venv/bin/python bench/run.py --quick         # ceilings, dispatch and claims only, under 3 minutes (make bench-quick)
    .venv/bin/python bench/run.py --groups serving  # the serving stacks (make bench-serving)

Groups: ceilings, dispatch, claims, scale, serving. The ceilings run first: the dispatch rows are
reported as ratios of them. Each row names its target from issue 14's "Targets" and whether this run
met it; nothing is asserted (a benchmark reports, it never fails the build). Services: PostgreSQL
127.0.0.1:5432, Redis (CONVHUB_BENCH_REDIS_URL, default db 13), RabbitMQ (CONVHUB_BENCH_AMQP_URL).
pgqueuer, gunicorn, waitress and gevent come from bench/requirements-extra.txt, installed by `make
bench` into bench/.extra (never into the product's environment); rows whose package is missing say so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE), str(HERE / ".extra")):
    if p not in sys.path:
        sys.path.insert(0 if p != str(HERE / ".extra") else len(sys.path), p)

import kit  # noqa: E402
from kit import Row  # noqa: E402

GROUPS = ("ceilings", "dispatch", "claims", "scale", "serving")
PACKAGES = ("SQLAlchemy", "psycopg", "gunicorn", "Flask", "Werkzeug", "celery", "kombu", "redis", "spyne", "lxml",
            "pgqueuer", "asyncpg", "granian", "waitress", "gevent")


# What limits a row whose target is missed (after the Core hot path: 1 round trip per empty poll, 2 per
# poll with a job, 1 per finish on PostgreSQL, no pre-ping).
LIMITS = {
    "dispatch": "web-worker CPU per request (web_cpu_ms), not round trips (stmts/checkouts): XML-RPC parsing "
                "and base64 of the 10 KiB document and result, the pool checkout and psycopg, auth and metrics, in "
                "Python on 2 cores shared with the database and the 8 clients; on the embedded default also the "
                "mirror's removal through kombu's SQL broker and SQLite's write transactions (claim, finish) "
                "through the ORM session; the empty poll's Python costs ~0.5 ms where granian's ping costs a "
                "fraction of that (docs/benchmarks.md, 'Web CPU per request')",
    "claims": "the poll service does more than the raw claim: the fair-share probe over every served pair, the "
              "factory touch and a session per poll (several statements), where the raw claim is one prepared "
              "statement on one kept connection; pgqueuer batches on asyncpg",
    "scale": "see the row's columns; the database work of this one call dominates",
}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    for name, cmd in (("postgresql", ["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"]),
                      ("redis_server", ["redis-cli", "INFO", "server"])):
        try:
            text = subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout
            out[name] = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("redis_version")), text.strip()) \
                if name == "redis_server" else text.strip()
        except OSError:
            out[name] = None
    return out


def git_commit() -> str:
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True).stdout
    return r.stdout.strip() + ("+dirty" if dirty.strip() else "")


def table(rows: list[Row]) -> str:
    lines = []
    group = None
    for r in rows:
        if r.group != group:
            group = r.group
            lines.append(f"\n== {group}")
        met = {True: "MET", False: "missed", None: "-"}[r.met]
        lines.append(f"- {r.name}")
        if r.values:
            lines.append(f"    {r.cell()}")
        if r.target:
            lines.append(f"    target: {r.target}: {met}")
        if r.note:
            lines.append(f"    note: {r.note}")
    return "\n".join(lines)


def markdown(result: dict[str, Any]) -> str:
    """The results file as the Markdown table docs/benchmarks.md shows."""
    v = result["versions"]
    head = (f"Run {result['date']}, commit `{result['git_commit']}`, {result['cores']} cores, load average "
            f"{result['load_average_before'][0]} before / {result['load_average_after'][0]} after (machine shared with other "
            f"work: load varied during the run), {result['total_seconds']:.0f} s. Python {v['python']}, "
            + ", ".join(f"{k} {v[k]}" for k in PACKAGES + ("postgresql", "redis_server") if v.get(k)) + ".\n")
    lines = [head, "| group | row | measured | target | met |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        row = Row(r["group"], r["name"], r["values"], r["target"], r["met"], r["note"])
        met = {True: "yes", False: "**no**", None: ""}[row.met]
        cell = row.cell().replace("  ", "<br>") + (f"<br>*{row.note}*" if row.note else "")
        lines.append(f"| {row.group} | {row.name} | {cell} | {row.target} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="ceilings, dispatch and claims with short windows (< 3 min)")
    ap.add_argument("--groups", default="", help=f"comma-separated subset of {','.join(GROUPS)}")
    ap.add_argument("--seconds", type=float, default=None, help="measurement window per row (default 10; 4 with --quick)")
    ap.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    ap.add_argument("--markdown", metavar="FILE", help="print FILE (a results file) as a Markdown table and exit")
    args = ap.parse_args(argv)
    kit.stop_servers_on_exit()
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    groups = [g for g in args.groups.split(",") if g] or (["ceilings", "dispatch", "claims"] if args.quick else list(GROUPS))
    unknown = set(groups) - set(GROUPS)
    if unknown:
        ap.error(f"unknown group(s): {', '.join(sorted(unknown))}")
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    if "dispatch" in groups and "ceilings" not in groups:
        groups.insert(0, "ceilings")  # the dispatch targets are ratios of the same run's ceilings

    import rows_claims
    import rows_http
    import rows_scale

    ctx: dict[str, Any] = {}
    rows: list[Row] = []
    started = time.monotonic()
    load_before = os.getloadavg()
    for g in GROUPS:
        if g not in groups:
            continue
        t = time.monotonic()
        print(f"[bench] {g} ...", flush=True)
        try:
            if g == "ceilings":
                new = rows_http.ceilings(seconds, ctx)
            elif g == "dispatch":
                lead = 3.0 if args.quick else 4.0
                # The factories cycle from the start of the lead (warm-up, unrecorded): the backlog must
                # outlast lead + window at the fastest rate seen (~190 cycles/s), or the window measures
                # empty polls (the row's empty_polls_during says if it did).
                new = rows_http.dispatch(seconds, int((seconds + lead) * 300) + 500, ctx, lead=lead)
            elif g == "claims":
                new = rows_claims.claims(2.0 if args.quick else seconds / 2, 20_000 if args.quick else 100_000, ctx,
                                         shapes=rows_claims.TARGET_SHAPES if args.quick else rows_claims.SHAPES)
            elif g == "scale":
                new = rows_scale.backlog_rows(seconds / 2) + rows_scale.million_rows(seconds / 2, 1_000_000)
                new += rows_scale.large_rows((1, 10, 100)) + rows_scale.lease_rows(10_000)
            else:
                new = rows_http.serving(seconds / 2, ctx)
        except Exception as exc:  # noqa: BLE001 - one broken group does not hide the others
            new = [Row(g, f"{g} (group failed)", note=f"{type(exc).__name__}: {exc}")]
        for r in new:
            if r.met is False and not r.note and g in LIMITS:
                r.note = "limited by " + LIMITS[g]
        rows += new
        print(table(new), flush=True)
        print(f"[bench] {g}: {time.monotonic() - t:.0f} s", flush=True)

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "versions": versions(),
        "groups": groups,
        "quick": args.quick,
        "seconds_per_window": seconds,
        "total_seconds": round(time.monotonic() - started, 1),
        "rows": [{"group": r.group, "name": r.name, "values": r.values, "target": r.target, "met": r.met, "note": r.note} for r in rows],
    }
    print("\n" + "=" * 100)
    print(f"convhub bench {result['date']}  commit {result['git_commit']}  {result['cores']} cores  "
          f"load {result['load_average_before'][0]} -> {result['load_average_after'][0]} (shared machine)")
    print(table(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
