"""What the operator sees (the /ops page and the /metrics gauges), read as plain data.

The web tier renders these; it never queries a model itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import ClientApplication, Factory, Job, Quarantine
from app.domain.states import IN_FLIGHT, JobState
from app.services import statements as sql

# A factory counts as active when it polled within this window. The poll service writes
# last_poll_at at most once a minute per process, so the window must be well above that.
ACTIVE_WINDOW = timedelta(minutes=5)


@dataclass(frozen=True)
class PairStats:
    """Jobs of one (application, version) in one state."""

    application: str
    version: str
    state: int
    count: int
    oldest_submitted: datetime | None


def job_stats(session: Session) -> list[PairStats]:
    """One GROUP BY over the jobs table: count and oldest submission per (state, pair)."""
    rows = session.execute(
        select(Job.state, Job.application, Job.version, func.count(), func.min(Job.submitted_at))
        .where(sql.IS_VISIBLE)
        .group_by(Job.state, Job.application, Job.version)
    ).all()
    return [PairStats(a, v, int(st), int(n), _aware(oldest)) for st, a, v, n, oldest in rows]


def _aware(value: object) -> datetime | None:
    # min() over a TypeDecorator column comes back raw on SQLite (naive text/datetime).
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True)
class FarmCounts:
    """Counts only (no client, document or factory names): /metrics and /ops."""

    quarantined: int  # documents quarantined now
    following: int  # QUEUED jobs following a cached conversion's leader
    cancel_requested: int  # in-flight jobs whose client asked to cancel them


def farm_counts(session: Session) -> FarmCounts:
    quarantined = session.scalar(select(func.count()).select_from(Quarantine).where(Quarantine.released_at.is_(None)))
    following = session.scalar(
        select(func.count()).select_from(Job).where(Job.follows_job_id.is_not(None), Job.state == int(JobState.QUEUED))
    )
    cancelling = session.scalar(
        select(func.count()).select_from(Job).where(sql.IS_IN_FLIGHT, Job.cancel_requested.is_(True))
    )
    return FarmCounts(int(quarantined or 0), int(following or 0), int(cancelling or 0))


def factory_counts(session: Session, now: datetime) -> tuple[int, int, int]:
    """(registered, disabled, active within ACTIVE_WINDOW and enabled)."""
    total, disabled, active = session.execute(
        select(
            func.count(),
            func.count().filter(Factory.disabled.is_(True)),
            func.count().filter(Factory.disabled.is_(False), Factory.last_poll_at >= now - ACTIVE_WINDOW),
        ).select_from(Factory)
    ).one()
    return int(total), int(disabled or 0), int(active or 0)


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _listed(s: Session, where: object, limit: int, *order: object) -> list[tuple[Job, dict[str, object]]]:
    """Up to `limit` jobs with their client's name, and the fields every list shows."""
    rows = s.execute(
        select(Job, ClientApplication.name)
        .join(ClientApplication, ClientApplication.id == Job.client_id)
        .where(where)  # type: ignore[arg-type]
        .order_by(*order)  # type: ignore[arg-type]
        .limit(limit)
    ).all()
    return [
        (
            j,
            {"id": j.id, "guid": j.guid, "client": name, "application": j.application, "version": j.version,
             "attempts": j.attempts},
        )
        for j, name in rows
    ]


def oldest_waiting(s: Session, now: datetime, limit: int) -> list[dict[str, object]]:
    """The oldest QUEUED jobs, oldest first."""
    # The literal IS_QUEUED predicate lets the planner use the backlog's partial index.
    return [
        {
            **row,
            "doctype": j.doctype,
            "format": j.format or "",
            "submitted": _iso(j.submitted_at),
            "ageSeconds": max(0, int((now - j.submitted_at).total_seconds())),
        }
        for j, row in _listed(s, sql.IS_QUEUED, limit, Job.submitted_at, Job.id)
    ]


def recent_failures(s: Session, limit: int) -> list[dict[str, object]]:
    """The most recently FAILED jobs, newest first."""
    return [
        {**row, "failed": _iso(j.updated_at), "reason": j.failure_reason or ""}
        for j, row in _listed(s, Job.state == int(JobState.FAILED), limit, Job.updated_at.desc(), Job.id.desc())
    ]


@dataclass(frozen=True)
class ClientLoad:
    """One client application's farm-policy view: its settings and what it has queued and in flight."""

    id: int
    name: str
    weight: int
    max_queued: int  # effective: the client's own limit or the setting CONVHUB_CLIENT_MAX_QUEUED
    max_in_flight: int | None  # None: unlimited
    queued: int
    in_flight: int


def client_loads(session: Session, default_max_queued: int) -> list[ClientLoad]:
    """Every client with its weight, limits, backlog and jobs in flight (one GROUP BY over the
    jobs in states 0-2, on ix_jobs_client_state_id, and one read of the clients)."""
    counts: dict[tuple[int, int], int] = {
        (cid, int(st)): int(n)
        for cid, st, n in session.execute(
            select(Job.client_id, Job.state, func.count())
            .where(Job.state.in_([int(JobState.QUEUED), *[int(s) for s in IN_FLIGHT]]))
            .group_by(Job.client_id, Job.state)
        ).all()
    }
    return [
        ClientLoad(
            id=c.id,
            name=c.name,
            weight=c.weight,
            max_queued=default_max_queued if c.max_queued is None else c.max_queued,
            max_in_flight=c.max_in_flight,
            queued=counts.get((c.id, int(JobState.QUEUED)), 0),
            in_flight=sum(counts.get((c.id, int(s)), 0) for s in IN_FLIGHT),
        )
        for c in session.scalars(select(ClientApplication).order_by(ClientApplication.name))
    ]
