"""Prometheus instruments shared by every process kind.

Counters and histograms live here; gauges of jobs by state are computed from the database at
scrape time (the database is the truth, and every web process would report the same numbers).
With several web workers set PROMETHEUS_MULTIPROC_DIR (convhub web does) so counters add up across workers.
Labels carry only application/version and outcomes: no client names, no job data.
Totals of events that happen in Celery workers (expired leases, failed callbacks) live in the
database's `counters` table and are exported by the web's database collector.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

POLLS = Counter("convhub_polls_total", "jobs.poll calls", ["outcome"])  # outcome: job | empty | error
LEASES_GRANTED = Counter("convhub_leases_granted_total", "Leases granted by jobs.poll or a Celery factory", ["application", "version"])
LEASES_FENCED = Counter("convhub_leases_fenced_total", "Finish/extend/fail refused because the lease was not held")
FINISHED = Counter("convhub_jobs_finished_total", "Jobs completed by a factory", ["application", "version"])
FAILED_ATTEMPTS = Counter("convhub_attempts_failed_total", "jobs.fail calls accepted")
RPC_FAULTS = Counter("convhub_xmlrpc_faults_total", "XML-RPC faults returned", ["code"])
SOAP_STATUS = Counter("convhub_soap_responses_total", "SOAP responses by status code", ["operation", "status"])

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
POLL_SECONDS = Histogram("convhub_poll_seconds", "jobs.poll latency (seconds, without the document transfer)", buckets=_BUCKETS)
FINISH_SECONDS = Histogram("convhub_finish_seconds", "jobs.finish latency (seconds)", buckets=_BUCKETS)
