"""`GET /metrics`: Prometheus text format.

Two kinds of numbers:
- counters and histograms of app/metrics.py (and the HTTP counter below), kept per process. Under
  `convhub web` (granian, several worker processes) PROMETHEUS_MULTIPROC_DIR is set and every
  worker writes them to files there; a scrape of any worker adds up all of them with
  MultiProcessCollector. A dead worker's counter files stay (totals never go down); live-gauge
  files of processes that are gone are dropped at each scrape (`reap_dead`), since granian has no
  hook for a worker's exit.
- gauges derived from the database (jobs by state and pair, oldest QUEUED age, active factories),
  computed at scrape time by the one process that serves the scrape. They are never written to
  the multiprocess files, so they are reported once, not once per worker.

Labels carry only states, application/version and outcomes: no client names, no job data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from app.domain.states import JobState
from app.services import counters
from app.services.admin import served_pairs
from app.services.ops_views import ACTIVE_WINDOW, client_loads, factory_counts, farm_counts, job_stats
from app.services.runtime import Runtime

log = logging.getLogger("convhub.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Served by this module, so that every process kind of the web tier is counted the same way.
HTTP_REQUESTS = Counter(
    "convhub_http_requests_total", "HTTP requests served by the web tier", ["endpoint", "method", "status"]
)
HTTP_SECONDS = Histogram(
    "convhub_http_request_seconds",
    "HTTP request duration (seconds, until the response body was sent)",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
)


def endpoint_of(path: str) -> str:
    """A fixed, small label set for HTTP metrics: never the raw path (ids, GUIDs)."""
    if path == "/xmlrpc" or path.startswith("/xmlrpc/"):
        return "xmlrpc"
    if path.startswith("/cds-controller/"):
        return "soap"
    if path == "/ops" or path.startswith("/ops/"):
        return "ops"
    if path in ("/metrics", "/healthz"):
        return path[1:]
    return "other"


# ---------------------------------------------------------------- database figures


class DatabaseCollector(Collector):
    """Gauges computed from the database at scrape time (registered once per web process)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def describe(self) -> list[object]:  # type: ignore[override]
        # No describe-time collection: registering must not touch the database.
        return []

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:  # type: ignore[override]
        up = GaugeMetricFamily(
            "convhub_metrics_database_up", "1 if the database answered this scrape's queries"
        )
        now = self.rt.now()
        try:
            with self.rt.db.read_session() as s:
                stats = job_stats(s)
                pairs = served_pairs(s)  # explicit zeros, so alerts never see 'absent'
                registered, disabled, active = factory_counts(s, now)
                totals = counters.read_all(s)
                farm = farm_counts(s)
                loads = client_loads(s, self.rt.settings.client_max_queued)
        except Exception:  # a scrape must answer; the failure is itself a metric
            log.warning("metrics: database query failed", exc_info=True)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        jobs = GaugeMetricFamily(
            "convhub_jobs",
            "Jobs by state and application/version (from the database)",
            labels=["state", "application", "version"],
        )
        oldest = GaugeMetricFamily(
            "convhub_oldest_queued_age_seconds",
            "Age (now - submission) of the oldest QUEUED job per application/version; 0 when none waits",
            labels=["application", "version"],
        )
        by_key = {(p.state, p.application, p.version): p for p in stats}
        pairs |= {(p.application, p.version) for p in stats}
        for a, v in sorted(pairs):
            for st in JobState:
                p = by_key.get((int(st), a, v))
                jobs.add_metric([st.name, a, v], p.count if p else 0)
            q = by_key.get((int(JobState.QUEUED), a, v))
            age = (now - q.oldest_submitted).total_seconds() if q and q.oldest_submitted else 0.0
            oldest.add_metric([a, v], max(0.0, age))
        yield jobs
        yield oldest

        fac = GaugeMetricFamily("convhub_factories", "Registered factories by status", labels=["status"])
        fac.add_metric(["registered"], registered)
        fac.add_metric(["disabled"], disabled)
        fac.add_metric(["active"], active)
        yield fac
        act = GaugeMetricFamily(
            "convhub_factories_active",
            f"Enabled factories that polled within {int(ACTIVE_WINDOW.total_seconds())} s",
        )
        act.add_metric([], active)
        yield act

        # Farm policy, counts only: no client, document or factory names.
        for name, help_text, value in (
            ("convhub_quarantined_documents", "Documents quarantined now (not released)", farm.quarantined),
            ("convhub_jobs_following", "QUEUED jobs following an identical conversion (result cache)", farm.following),
            ("convhub_jobs_cancel_requested", "In-flight jobs whose client asked to cancel them", farm.cancel_requested),
        ):
            gauge = GaugeMetricFamily(name, help_text)
            gauge.add_metric([], value)
            yield gauge
        # Per client: counts only. The label is the client application's numeric id (stable, and no
        # name leaks to whoever scrapes), its name only with CONVHUB_METRICS_CLIENT_NAMES=true.
        # Series only for clients with jobs queued or in flight, so idle clients add none.
        named = self.rt.settings.metrics_client_names
        backlog = GaugeMetricFamily("convhub_client_queued", "QUEUED jobs per client application", labels=["client"])
        held = GaugeMetricFamily("convhub_client_in_flight", "Jobs in flight per client application", labels=["client"])
        for c in loads:
            if c.queued or c.in_flight:
                label = c.name if named else str(c.id)
                backlog.add_metric([label], c.queued)
                held.add_metric([label], c.in_flight)
        yield backlog
        yield held

        # Events of the Celery workers, counted in the database (see app/services/counters.py).
        for name, help_text in (
            (counters.LEASES_EXPIRED, "Leases reclaimed after expiry (all processes)"),
            (counters.CALLBACK_FAILURES, "Callback deliveries that failed (all processes)"),
            (counters.CACHE_HITS, "Submissions completed at once from the result cache"),
            (counters.CACHE_FOLLOWS, "Submissions that followed an identical queued or running conversion"),
            (counters.QUARANTINED, "Documents quarantined (failed permanently or hung on 2 factories)"),
            (counters.CANCELLED, "Cancellations accepted"),
        ):
            total = CounterMetricFamily(f"convhub_{name}", help_text)
            total.add_metric([], totals.get(name, 0))
            yield total


class _Forward(Collector):
    """Collects another registry (the process-local default one) into ours."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self):  # type: ignore[no-untyped-def]
        return self.registry.collect()


def multiprocess_dir() -> str | None:
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()
    return path or None


def build_registry(rt: Runtime) -> CollectorRegistry:
    """The registry `/metrics` renders: process counters (or all workers' files) + database gauges."""
    registry = CollectorRegistry(auto_describe=False)
    mp = multiprocess_dir()
    if mp:
        from prometheus_client import multiprocess

        multiprocess.MultiProcessCollector(registry, path=mp)
    else:
        registry.register(_Forward(REGISTRY))
    registry.register(DatabaseCollector(rt))
    return registry


def reap_dead(path: str) -> list[int]:
    """Mark dead (prometheus_client's `mark_process_dead`) every process with live-gauge files in
    `path` that no longer exists; returns their pids. convhub defines no live gauges today: this
    keeps a future one correct after a worker is killed and respawned."""
    from prometheus_client import multiprocess

    gone = []
    for pid in sorted({int(p.stem.rsplit("_", 1)[-1]) for p in Path(path).glob("gauge_live*_*.db")
                       if p.stem.rsplit("_", 1)[-1].isdigit()}):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, path)
            gone.append(pid)
        except PermissionError:  # alive, someone else's
            pass
    return gone


def render(registry: CollectorRegistry) -> bytes:
    mp = multiprocess_dir()
    if mp:
        reap_dead(mp)
    return generate_latest(registry)
