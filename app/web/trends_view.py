"""The trends section of /ops: backlog, completions and failures over the last hour or day.

`register(bp, rt)` adds `GET /ops/trends` (the section alone, which the page's trends.js re-fetches
once a minute) to the ops blueprint, so it sits behind the same operator check and headers, and
returns the `TrendsView` whose `for_page(request)` the /ops page renders the section with.

Query arguments: `trend=hour|day` (default hour), `pair=<application>|<version>` (default: all) and
`trend_refresh=N` (trends.js re-fetches every N seconds instead of every 60).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from flask import Blueprint, Request, render_template, request
from markupsafe import Markup

from app.services import trends
from app.services.runtime import Runtime
from app.web import charts


@dataclass(frozen=True)
class Window:
    key: str
    label: str
    span: timedelta
    step: timedelta


WINDOWS = {
    "hour": Window("hour", "Last hour", trends.HOUR, trends.MINUTE),
    # 144 points of 10 minutes: fine enough to see a day's shape, light enough to hover.
    "day": Window("day", "Last 24 hours", trends.DAY, timedelta(minutes=10)),
}
DEFAULT_WINDOW = "hour"
REFRESH_SECONDS = 60
PAIR_SEPARATOR = "|"


def pair_param(pair: trends.Pair) -> str:
    return "" if pair == trends.OVERALL else f"{pair[0]}{PAIR_SEPARATOR}{pair[1]}"


class TrendsView:
    """Builds the section's template context, kept until the next snapshot.

    Snapshots change once a minute while /ops is rendered every few seconds, so per window the
    series and the per-pair rows (sparklines) are cached, and per (window, pair) the three charts,
    all keyed by the current minute and the newest snapshot (one index probe per request).
    """

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._series: dict[str, tuple[object, trends.Trends, list[dict[str, object]]]] = {}
        self._charts: dict[tuple[str, str], tuple[object, dict[str, object]]] = {}
        self._lock = threading.Lock()

    def for_page(self, req: Request) -> dict[str, object] | None:
        """The section's context for /ops; None for the page's own background refresh (a fetch, by
        its Fetch Metadata), which replaces only the live tables and would throw the charts away."""
        if req.headers.get("Sec-Fetch-Dest") == "empty":
            return None
        return self.context(req.args)

    def context(self, args: Mapping[str, str]) -> dict[str, object]:
        return {**self._cached(args), "refresh_ms": _refresh_ms(args.get("trend_refresh", ""))}

    def _cached(self, args: Mapping[str, str]) -> dict[str, object]:
        window = WINDOWS.get(args.get("trend", ""), WINDOWS[DEFAULT_WINDOW])
        wanted = args.get("pair", "")
        now = self.rt.now()
        with self.rt.db.read_session() as s:
            stamp = (trends.minute_of(now), trends.latest(s))
            with self._lock:
                charts_hit = self._charts.get((window.key, wanted))
                series_hit = self._series.get(window.key)
            if charts_hit is not None and charts_hit[0] == stamp:
                return charts_hit[1]
            if series_hit is None or series_hit[0] != stamp:
                data = trends.series(s, now, window.span, step=window.step)
                series_hit = (stamp, data, _pair_rows(data))
                with self._lock:
                    self._series[window.key] = series_hit
        ctx = _context(series_hit[1], series_hit[2], window, wanted)
        if ctx["selected"] == wanted:  # only pairs that exist are cached: the key is the caller's
            with self._lock:
                self._charts[(window.key, wanted)] = (stamp, ctx)
        return ctx


def register(bp: Blueprint, rt: Runtime) -> TrendsView:
    view = TrendsView(rt)

    @bp.get("/ops/trends")
    def trends_section():  # type: ignore[no-untyped-def]
        return render_template("ops/trends.html", trends=view.context(request.args))

    return view


def _pair_rows(data: trends.Trends) -> list[dict[str, object]]:
    """One row per pair: its backlog now, totals over the window and a sparkline of each series."""
    return [
        {
            "param": pair_param(p.pair),
            "application": p.application,
            "version": p.version,
            "backlog_now": p.backlog_now,
            "completed": p.completed_total,
            "failed": p.failed_total,
            "backlog": Markup(charts.sparkline(f"{p.label} backlog", p.backlog, color=charts.BLUE, unit="jobs")),
            "completions": Markup(
                charts.sparkline(f"{p.label} completions", p.completed, color=charts.GREEN, unit="per min")
            ),
            "failures": Markup(charts.sparkline(f"{p.label} failures", p.failed, color=charts.RED, unit="per min")),
        }
        for p in data.pairs
    ]


def _context(data: trends.Trends, rows: list[dict[str, object]], window: Window, wanted: str) -> dict[str, object]:
    by_param = {pair_param(s.pair): s for s in (data.overall, *data.pairs)}
    scope = by_param.get(wanted)
    missing = scope is None and wanted != ""
    if scope is None:
        scope = data.overall
    per_min = "per min" if window.step == trends.MINUTE else "per min, average"
    times, step = data.times, data.step
    backlog = charts.line_chart(
        "Backlog",
        times,
        [
            charts.Line("queued", scope.backlog, charts.BLUE, area=True),
            charts.Line("in flight", scope.in_flight, charts.AMBER, dashed=True),
        ],
        step=step,
        unit="jobs",
    )
    completed = charts.line_chart(
        "Completions", times, [charts.Line("completed", scope.completed, charts.GREEN, area=True)], step=step, unit=per_min
    )
    failed = charts.line_chart(
        "Failures", times, [charts.Line("failed", scope.failed, charts.RED, area=True)], step=step, unit=per_min
    )
    return {
        "window": window.key,
        "window_label": window.label,
        "windows": [(w.key, w.label) for w in WINDOWS.values()],
        "selected": pair_param(scope.pair),
        "missing_pair": wanted if missing else "",
        "scope_label": scope.label,
        "pairs": [(pair_param(p.pair), p.label) for p in data.pairs],
        "minutes": data.minutes,
        "latest": f"{data.latest:%Y-%m-%d %H:%M}" if data.latest else "",
        "backlog_now": scope.backlog_now,
        "in_flight_now": scope.in_flight_now,
        "completed": scope.completed_total,
        "failed": scope.failed_total,
        "charts": [Markup(backlog), Markup(completed), Markup(failed)],
        "rows": rows,
    }


def _refresh_ms(raw: str) -> int:
    """How often trends.js re-fetches the section: a minute (snapshots are per minute), or as asked."""
    seconds = int(raw) if raw.isdigit() else REFRESH_SECONDS
    return max(1, min(seconds, 3600)) * 1000
