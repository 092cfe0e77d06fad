"""app.services.trends on real SQLite and PostgreSQL, time moved by the FakeClock.

The snapshot counts what the job store did (submit, claim, finish, fail, reclaim, delete), so every
test drives the real services and checks the recorded numbers against what it did.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from app.db.models import Job, TrendSnapshot
from app.domain.states import JobState
from app.services import client_views, maintenance, trends
from tests.conftest import add_client, submit_job
from tests.trendkit import CALC_SPEC, claim, fail, finish, record

WRITER = ("LibreOffice Writer", "7.4")
CALC = ("LibreOffice Calc", "7.4")


@pytest.fixture
def rt(make_runtime, any_db_url):  # type: ignore[no-untyped-def]
    return make_runtime(database_url=any_db_url, broker=False, max_attempts=1)


def rows(rt, at: datetime) -> dict[tuple[str, str], tuple[int, int, int, int]]:  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        return {
            (r.application, r.version): (r.backlog, r.in_flight, r.completed, r.failed)
            for r in s.scalars(select(TrendSnapshot).where(TrendSnapshot.at == at))
        }


def to_minute(clock, minute: int, second: int = 0) -> datetime:  # type: ignore[no-untyped-def]
    """Move the clock forward to 12:<minute>:<second> of the test day."""
    target = datetime(2026, 1, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=minute, seconds=second)
    assert target >= clock(), "the clock only moves forward"
    clock.advance((target - clock()).total_seconds())
    return target


def submit_calc(rt, client: int):  # type: ignore[no-untyped-def]
    return submit_job(rt, client, filename="sheet.ods", application=CALC[0], version=CALC[1])


def test_a_snapshot_counts_backlog_in_flight_and_the_last_minutes_ends(rt, clock) -> None:  # type: ignore[no-untyped-def]
    client = add_client(rt)
    for _ in range(5):
        submit_job(rt, client)
    submit_calc(rt, client)
    submit_calc(rt, client)
    to_minute(clock, 0, 20)
    done, failed, held = claim(rt), claim(rt), claim(rt)
    finish(rt, done)
    assert fail(rt, failed) == JobState.FAILED  # max_attempts=1: the first failure is final
    calc = claim(rt, CALC_SPEC)
    to_minute(clock, 0, 59)
    finish(rt, calc)

    to_minute(clock, 1, 3)
    assert record(rt) == 3  # overall + two pairs
    at = datetime(2026, 1, 1, 12, 1, tzinfo=UTC)
    assert rows(rt, at) == {
        trends.OVERALL: (3, 1, 2, 1),
        WRITER: (2, 1, 1, 1),
        CALC: (1, 0, 1, 0),
    }
    # Idempotent within the minute: nothing more is written, nothing changes.
    finish(rt, held)
    to_minute(clock, 1, 59)
    assert record(rt) == 0
    assert rows(rt, at)[WRITER] == (2, 1, 1, 1)

    # The next minute counts the next minute's ends only: the job finished at 12:01:03.
    to_minute(clock, 2)
    assert record(rt) == 3
    assert rows(rt, at + timedelta(minutes=1)) == {
        trends.OVERALL: (3, 0, 1, 0),
        WRITER: (2, 0, 1, 0),
        CALC: (1, 0, 0, 0),
    }
    # Once a pair has nothing to report, only the overall row is written.
    with rt.db.session() as s:
        for job_id, state in s.execute(select(Job.id, Job.state)).all():
            if state == JobState.QUEUED:
                client_views.delete_one(s, rt.now(), client, job_id)
    to_minute(clock, 4)
    assert record(rt) == 1
    assert rows(rt, at + timedelta(minutes=3)) == {trends.OVERALL: (0, 0, 0, 0)}


def test_jobs_deleted_or_requeued_after_they_ended_still_count(rt, clock) -> None:  # type: ignore[no-untyped-def]
    client = add_client(rt)
    ids = [submit_job(rt, client)[0] for _ in range(3)]
    to_minute(clock, 0, 10)
    a, b, c = claim(rt), claim(rt), claim(rt)
    finish(rt, a)
    fail(rt, b)
    finish(rt, c)
    to_minute(clock, 0, 30)
    with rt.db.session() as s:
        client_views.delete_one(s, rt.now(), client, ids[0])  # completed, then deleted
        client_views.delete_one(s, rt.now(), client, ids[1])  # failed, then deleted
        maintenance.requeue(s, rt.now(), rt.mirror, ids[2])  # completed, then put back by the operator
    to_minute(clock, 1)
    record(rt)
    assert rows(rt, datetime(2026, 1, 1, 12, 1, tzinfo=UTC))[WRITER] == (1, 0, 2, 1)


def test_an_expired_lease_that_uses_the_last_attempt_counts_as_a_failure(rt, clock) -> None:  # type: ignore[no-untyped-def]
    client = add_client(rt)
    submit_job(rt, client)
    claim(rt)
    to_minute(clock, 0, 1)
    clock.advance(rt.settings.lease_seconds)  # 12:05:01
    with rt.db.session() as s:
        assert [state for _, state in maintenance.reclaim_expired(s, rt.now(), rt.notifier, rt.mirror)] == [JobState.FAILED]
    to_minute(clock, 6)
    record(rt)
    assert rows(rt, datetime(2026, 1, 1, 12, 6, tzinfo=UTC))[WRITER] == (0, 0, 0, 1)


def test_racing_recorders_write_one_snapshot(rt, clock) -> None:  # type: ignore[no-untyped-def]
    client = add_client(rt)
    submit_job(rt, client)
    submit_calc(rt, client)
    to_minute(clock, 1, 30)
    start = threading.Barrier(4)
    written: list[int] = []
    errors: list[BaseException] = []

    def go() -> None:
        try:
            start.wait()
            written.append(record(rt))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(written) == 3  # one recorder wrote the minute; the others wrote nothing
    with rt.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(TrendSnapshot)) == 3


def test_series_of_the_last_hour(rt, clock) -> None:  # type: ignore[no-untyped-def]
    client = add_client(rt)
    # Minute m (1..10) has m Writer jobs queued; from minute 3 one job completes per minute.
    # Minutes 6 and 7 are not recorded (beat was down): a gap, not zeros.
    for m in range(1, 11):
        submit_job(rt, client)
        if m >= 3:
            finish(rt, claim(rt))
            submit_job(rt, client)  # keep the backlog rising by one per minute
        to_minute(clock, m)
        if m not in (6, 7):
            record(rt)
    submit_calc(rt, client)
    to_minute(clock, 11)
    record(rt)

    to_minute(clock, 11, 40)
    with rt.db.read_session() as s:
        t = trends.series(s, rt.now(), trends.HOUR)
    assert len(t.times) == 60
    assert t.times[-1] == datetime(2026, 1, 1, 12, 11, tzinfo=UTC)
    assert t.times[0] == datetime(2026, 1, 1, 11, 12, tzinfo=UTC)
    assert t.minutes == 9 and t.latest == t.times[-1]
    last = t.overall.backlog[-11:]
    assert last == (1, 2, 3, 4, 5, None, None, 8, 9, 10, 11)
    assert t.overall.completed[-11:] == (0, 0, 1, 1, 1, None, None, 1, 1, 1, 0)
    assert t.overall.backlog[:-11] == (None,) * 49  # before the first snapshot
    assert t.overall.completed_total == 6  # the two unrecorded minutes' completions are not counted
    assert [p.pair for p in t.pairs] == [CALC, WRITER]
    calc = t.scope(CALC)
    assert calc is not None and calc.backlog[-11:] == (0,) * 5 + (None, None) + (0, 0, 0, 1)
    assert t.scope(WRITER).backlog[-1] == 10  # type: ignore[union-attr]
    assert (t.overall.backlog_now, calc.backlog_now, t.scope(WRITER).backlog_now) == (11, 1, 10)  # type: ignore[union-attr]
    assert t.scope(("nope", "1")) is None and t.scope(trends.OVERALL) is t.overall


def test_series_of_a_day_in_ten_minute_steps(rt, clock) -> None:  # type: ignore[no-untyped-def]
    client = add_client(rt)
    # 12:01 .. 12:20: one job completes each minute of 12:00-12:09 and two each minute from 12:10;
    # the backlog peaks at 12:05 with 5 waiting and at 12:15 with 3.
    for m in range(1, 21):
        for _ in range(1 if m <= 10 else 2):
            submit_job(rt, client)
            finish(rt, claim(rt))
        if m == 5:
            for _ in range(5):
                submit_job(rt, client)
        if m == 6:
            for _ in range(5):
                finish(rt, claim(rt))
        if m == 15:
            for _ in range(3):
                submit_job(rt, client)
        if m == 16:
            for _ in range(3):
                finish(rt, claim(rt))
        to_minute(clock, m)
        record(rt)
    with rt.db.read_session() as s:
        t = trends.series(s, rt.now(), trends.DAY, step=timedelta(minutes=10))
    assert len(t.times) == 144 and t.times[-1] == datetime(2026, 1, 1, 12, 20, tzinfo=UTC)
    assert t.overall.backlog[-2:] == (5, 3)  # the highest of each step
    assert (t.overall.backlog_now, t.overall.in_flight_now) == (0, 0)  # the newest minute's, not a step's
    # Per minute, averaged over the step: 12:00-12:10 ten ends + five = 1.5/min; 12:10-12:20 twenty + three.
    assert t.overall.completed[-2:] == (1.5, 2.3)
    assert t.overall.completed_total == 38
    assert t.overall.backlog[:-2] == (None,) * 142


def test_series_before_any_snapshot(rt, clock) -> None:  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        t = trends.series(s, rt.now(), trends.HOUR)
        assert trends.latest(s) is None
    assert t.minutes == 0 and t.latest is None and t.pairs == ()
    assert t.overall.backlog == (None,) * 60 and t.overall.completed_total == 0
    assert t.overall.backlog_now is None


def test_series_rejects_a_window_that_is_not_a_whole_number_of_steps(rt) -> None:  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        for window, step in [(trends.HOUR, timedelta(minutes=7)), (trends.HOUR, timedelta(seconds=30)), (timedelta(0), trends.MINUTE)]:
            with pytest.raises(ValueError):
                trends.series(s, rt.now(), window, step=step)


def test_prune_keeps_a_day_and_a_margin(rt, clock) -> None:  # type: ignore[no-untyped-def]
    add_client(rt)
    stamps = []
    for _ in range(4):  # snapshots at 12:00 on four days in a row
        record(rt)
        stamps.append(trends.minute_of(rt.now()))
        clock.advance(86400)
    with rt.db.session() as s:
        with pytest.raises(ValueError):
            trends.prune(s, rt.now(), timedelta(hours=24))  # would eat into the day the page shows
        assert trends.prune(s, rt.now()) == 2  # KEEP = 2 days: the first two are older
    with rt.db.read_session() as s:
        assert list(s.scalars(select(TrendSnapshot.at).order_by(TrendSnapshot.at))) == stamps[2:]
    with rt.db.session() as s:
        assert trends.prune(s, rt.now(), trends.MIN_KEEP) == 1
        assert trends.prune(s, rt.now(), trends.MIN_KEEP) == 0


def test_migration_fills_finished_at_of_jobs_that_ended_before_it(rt, clock, any_db_url) -> None:  # type: ignore[no-untyped-def]
    from alembic import command

    from app.db.migrate import alembic_config, upgrade

    client = add_client(rt)
    done_id = submit_job(rt, client)[0]  # the oldest: claimed and finished below
    queued = submit_job(rt, client)[0]
    clock.advance(30)
    finish(rt, claim(rt))
    rt.db.dispose()
    cfg = alembic_config(any_db_url)
    command.downgrade(cfg, "0002")
    upgrade(any_db_url)
    with rt.db.read_session() as s:
        got = dict(s.execute(select(Job.id, Job.finished_at)).all())
        updated = s.scalar(select(Job.updated_at).where(Job.id == done_id))
        assert s.scalar(select(func.count()).select_from(TrendSnapshot)) == 0
    assert got == {queued: None, done_id: updated}
