"""Trends for the ops page: a snapshot per minute recorded by beat, read back as series, pruned by age.

A snapshot at minute boundary `at` holds, per (application, version) and overall:
- `backlog` and `in_flight`: the QUEUED and REQUESTED_FOR_PROCESSING/PROCESSING counts when recorded;
- `completed` and `failed`: the jobs whose `finished_at` lies in `[at - 1 minute, at)`, whatever
  happened to them since (a job deleted right after it completed still completed).

The overall row (application = version = "") is written every minute, even when all is zero, so a
missing minute means "beat did not run" and shows as a gap, while a pair with nothing to report in a
minute has no row and reads as zeros. Everything takes `now`; nothing here sleeps or reads a clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, delete, func, literal_column, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.db.models import Job, TrendSnapshot
from app.domain.states import JobState

MINUTE = timedelta(minutes=1)
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# What retention keeps: the day the page shows, plus a margin for a late or stopped beat.
KEEP = timedelta(days=2)
MIN_KEEP = DAY + HOUR
OVERALL = ("", "")

Pair = tuple[str, str]


def minute_of(now: datetime) -> datetime:
    """The minute boundary at or before `now`."""
    return now.replace(second=0, microsecond=0)


# ---------------------------------------------------------------- record (beat, every minute)

# Literal state predicates, as in app.services.statements: they match the partial and state indexes.
_LIVE = Job.state.in_([literal_column("0"), literal_column("1"), literal_column("2")])
# A finished job that has since left COMPLETE/FAILED (deleted, or requeued by the operator) is told
# apart by its failure reason: finish() clears it, every way to FAILED sets it.
_WAS_COMPLETE = or_(
    Job.state == int(JobState.COMPLETE), and_(Job.state != int(JobState.FAILED), Job.failure_reason.is_(None))
)


@dataclass
class _Counts:
    backlog: int = 0
    in_flight: int = 0
    completed: int = 0
    failed: int = 0

    def add(self, other: _Counts) -> None:
        self.backlog += other.backlog
        self.in_flight += other.in_flight
        self.completed += other.completed
        self.failed += other.failed


def record_snapshot(session: Session, now: datetime) -> int:
    """Record the snapshot of the minute `now` falls in; rows written (0 if that minute has one).

    Idempotent per minute: a second run in the same minute, or two beats racing, write nothing more
    (checked first, and the unique (at, application, version) key makes the INSERT skip the rest).
    Two round trips of counting: one GROUP BY over the live jobs (state index), one over the jobs
    finished in the last minute (finished_at index).
    """
    at = minute_of(now)
    if session.scalar(select(TrendSnapshot.id).where(TrendSnapshot.at == at).limit(1)) is not None:
        return 0
    per_pair: dict[Pair, _Counts] = {}
    live = session.execute(
        select(Job.application, Job.version, Job.state, func.count())
        .where(_LIVE)
        .group_by(Job.application, Job.version, Job.state)
    )
    for application, version, state, n in live:
        c = per_pair.setdefault((application, version), _Counts())
        if state == int(JobState.QUEUED):
            c.backlog += int(n)
        else:
            c.in_flight += int(n)
    was_complete = case((_WAS_COMPLETE, 1), else_=0)
    finished = session.execute(
        select(Job.application, Job.version, func.count(), func.coalesce(func.sum(was_complete), 0))
        .where(Job.finished_at >= at - MINUTE, Job.finished_at < at)
        .group_by(Job.application, Job.version)
    )
    for application, version, n, n_complete in finished:
        c = per_pair.setdefault((application, version), _Counts())
        c.completed += int(n_complete)
        c.failed += int(n) - int(n_complete)
    overall = _Counts()
    for c in per_pair.values():
        overall.add(c)
    rows = [_row(at, OVERALL, overall)] + [_row(at, pair, per_pair[pair]) for pair in sorted(per_pair)]
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(TrendSnapshot)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[TrendSnapshot.at, TrendSnapshot.application, TrendSnapshot.version])
        .returning(TrendSnapshot.id)  # rows actually written (psycopg's rowcount is -1 here)
    )
    return len(session.execute(stmt).all())


def _row(at: datetime, pair: Pair, c: _Counts) -> dict[str, object]:
    return {
        "at": at,
        "application": pair[0],
        "version": pair[1],
        "backlog": c.backlog,
        "in_flight": c.in_flight,
        "completed": c.completed,
        "failed": c.failed,
    }


# ---------------------------------------------------------------- prune (beat, retention)


def prune(session: Session, now: datetime, keep: timedelta = KEEP) -> int:
    """Delete snapshots older than `keep` (at least a day and an hour: the page shows a day)."""
    if keep < MIN_KEEP:
        raise ValueError(f"keep must be at least {MIN_KEEP}, got {keep}")
    res = session.execute(delete(TrendSnapshot).where(TrendSnapshot.at < minute_of(now) - keep))
    return int(res.rowcount or 0)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- read (the ops page)


def latest(session: Session) -> datetime | None:
    """When the newest snapshot was taken (None before the first): one probe of the (at, ...) index."""
    return session.scalar(select(func.max(TrendSnapshot.at)))


@dataclass(frozen=True)
class Series:
    """One scope's values, one per step of `Trends.times`; None where no snapshot was recorded.

    Over a step of several minutes, `backlog` and `in_flight` are the step's highest value and
    `completed`/`failed` the average per minute over the minutes recorded in it.
    """

    application: str
    version: str
    backlog: tuple[int | None, ...]
    in_flight: tuple[int | None, ...]
    completed: tuple[float | None, ...]
    failed: tuple[float | None, ...]
    completed_total: int
    failed_total: int
    backlog_now: int | None  # at the newest snapshot of the window (None: no snapshot)
    in_flight_now: int | None

    @property
    def pair(self) -> Pair:
        return (self.application, self.version)

    @property
    def is_overall(self) -> bool:
        return self.pair == OVERALL

    @property
    def label(self) -> str:
        return "All applications" if self.is_overall else f"{self.application} {self.version}"


@dataclass(frozen=True)
class Trends:
    start: datetime  # exclusive
    end: datetime  # the last minute boundary
    step: timedelta
    times: tuple[datetime, ...]  # the end of each step, oldest first
    minutes: int  # snapshots recorded in the window
    latest: datetime | None  # the newest snapshot in the window
    overall: Series
    pairs: tuple[Series, ...]  # every pair with a row in the window, by application and version

    def scope(self, pair: Pair) -> Series | None:
        if pair == OVERALL:
            return self.overall
        return next((s for s in self.pairs if s.pair == pair), None)


@dataclass
class _Acc:
    backlog: list[int | None]
    in_flight: list[int | None]
    completed: list[int]
    failed: list[int]


def series(session: Session, now: datetime, window: timedelta, *, step: timedelta = MINUTE) -> Trends:
    """The snapshots of the `window` up to the current minute, in steps of `step` (plain data).

    One range read over the unique (at, ...) index; at most window/minute rows per pair.
    """
    if step < MINUTE or step % MINUTE or window % step or window <= timedelta(0):
        raise ValueError("window must be a positive multiple of step, and step a whole number of minutes")
    end = minute_of(now)
    start = end - window
    n = window // step
    times = tuple(start + step * (i + 1) for i in range(n))
    rows = session.execute(
        select(
            TrendSnapshot.at,
            TrendSnapshot.application,
            TrendSnapshot.version,
            TrendSnapshot.backlog,
            TrendSnapshot.in_flight,
            TrendSnapshot.completed,
            TrendSnapshot.failed,
        )
        .where(TrendSnapshot.at > start, TrendSnapshot.at <= end)
        .order_by(TrendSnapshot.at)
    ).all()
    minutes_in = [0] * n  # overall rows (recorded minutes) per step
    acc: dict[Pair, _Acc] = {}
    latest = None
    last_row: dict[Pair, tuple[datetime, int, int]] = {}
    for at, application, version, backlog, in_flight, completed, failed in rows:
        i = _step_index(at, start, step)
        pair = (application, version)
        last_row[pair] = (at, backlog, in_flight)
        if pair == OVERALL:
            minutes_in[i] += 1
            latest = at
        a = acc.get(pair)
        if a is None:
            a = acc[pair] = _Acc([None] * n, [None] * n, [0] * n, [0] * n)
        a.backlog[i] = max(a.backlog[i] or 0, backlog)
        a.in_flight[i] = max(a.in_flight[i] or 0, in_flight)
        a.completed[i] += completed
        a.failed[i] += failed

    def now_of(pair: Pair) -> tuple[int, int] | None:
        if latest is None:
            return None
        at, backlog, in_flight = last_row.get(pair, (None, 0, 0))
        return (backlog, in_flight) if at == latest else (0, 0)  # no row in the newest minute: zeros

    overall = _series(OVERALL, acc.get(OVERALL), minutes_in, now_of(OVERALL))
    pairs = tuple(_series(pair, acc[pair], minutes_in, now_of(pair)) for pair in sorted(acc) if pair != OVERALL)
    return Trends(start, end, step, times, sum(minutes_in), latest, overall, pairs)


def _step_index(at: datetime, start: datetime, step: timedelta) -> int:
    # Step i covers (start + i*step, start + (i+1)*step]: a snapshot at a step's end belongs to it.
    return -((start - at) // step) - 1


def _series(pair: Pair, a: _Acc | None, minutes_in: list[int], now: tuple[int, int] | None) -> Series:
    n = len(minutes_in)
    if a is None:
        a = _Acc([None] * n, [None] * n, [0] * n, [0] * n)

    def level(values: Iterable[int | None]) -> tuple[int | None, ...]:
        # A recorded minute without this pair's row means zero; an unrecorded one is a gap.
        return tuple((v or 0) if m else None for v, m in zip(values, minutes_in, strict=True))

    def rate(totals: Iterable[int]) -> tuple[float | None, ...]:
        return tuple(t / m if m else None for t, m in zip(totals, minutes_in, strict=True))

    return Series(
        application=pair[0],
        version=pair[1],
        backlog=level(a.backlog),
        in_flight=level(a.in_flight),
        completed=rate(a.completed),
        failed=rate(a.failed),
        completed_total=sum(a.completed),
        failed_total=sum(a.failed),
        backlog_now=None if now is None else now[0],
        in_flight_now=None if now is None else now[1],
    )
