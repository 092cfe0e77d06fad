"""Beat's maintenance tasks and beat itself while the database or the broker is away: one warning
line per run, no task failure with its traceback (found by the loss soak, tests/soak/test_loss.py:
a RabbitMQ restart gave a traceback per reconciliation in the worker's log and per due entry in
beat's)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from celery import Celery
from kombu.exceptions import OperationalError as KombuOperationalError

from app.domain.errors import Unavailable
from app.logs import CeleryOutageFilter
from tasks.base import skip_when_unavailable


def _task() -> SimpleNamespace:
    return SimpleNamespace(name="convhub.reconcile", app=Celery("t", broker="memory://", set_as_current=False))


@pytest.mark.parametrize(
    "exc",
    [Unavailable("database unavailable"), ConnectionResetError(104, "Connection reset by peer"),
     KombuOperationalError("[Errno 111] Connection refused")],
)
def test_a_run_during_an_outage_is_skipped_with_one_line(exc, caplog):
    def run(task):  # type: ignore[no-untyped-def]
        raise exc

    with caplog.at_level(logging.WARNING, logger="convhub.tasks"):
        assert skip_when_unavailable(run)(_task()) is None
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["convhub.reconcile skipped: database or broker unavailable"]
    assert all(r.exc_info is None for r in caplog.records)


def test_every_periodic_task_is_skipped_not_failed_during_an_outage():
    from app.config import Settings
    from tasks.celery_app import make_celery

    app = make_celery(Settings(data_dir=Path("var"), database_url="sqlite:///x.db", broker_url="memory://"))
    periodic = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert periodic and all(getattr(app.tasks[name].run, "__wrapped__", None) for name in periodic), periodic


def test_a_bug_still_fails_the_task():
    def run(task):  # type: ignore[no-untyped-def]
        raise KeyError("bug")

    with pytest.raises(KeyError):
        skip_when_unavailable(run)(_task())


def _beat_record(cause: BaseException) -> logging.LogRecord:
    # As celery.beat logs it: the stack of its loop as an argument, the SchedulingError as exc_info.
    from celery.beat import SchedulingError

    try:
        try:
            raise cause
        except BaseException as inner:
            raise SchedulingError(f"Couldn't apply scheduled task reclaim-expired-leases: {inner}") from None
    except SchedulingError:
        info = sys.exc_info()
    info[1].__context__ = cause  # type: ignore[union-attr]
    return logging.LogRecord("celery.beat", logging.ERROR, __file__, 1, "Message Error: %s\n%s",
                             (info[1], ["  File x, line 1\n"]), info)


def test_beat_logs_an_entry_it_could_not_send_in_one_line():
    record = _beat_record(KombuOperationalError("[Errno 111] Connection refused"))
    assert CeleryOutageFilter().filter(record)
    assert record.exc_info is None
    assert record.getMessage() == (
        "Couldn't apply scheduled task reclaim-expired-leases: OperationalError: [Errno 111] Connection refused "
        "(broker unavailable; sent again at its next time)"
    )


def test_a_full_disk_under_the_embedded_broker_is_one_line_without_sql():
    import sqlite3

    from sqlalchemy.exc import OperationalError

    full = OperationalError("INSERT INTO kombu_message (queue_id, visible) VALUES (?, ?)", (1, None),
                            sqlite3.OperationalError("database or disk is full"))
    record = _beat_record(full)
    assert CeleryOutageFilter().filter(record)
    message = record.getMessage()
    assert record.exc_info is None and "\n" not in message and "INSERT" not in message, message
    assert "database or disk is full" in message


def test_the_consumer_reconnection_back_off_has_no_traceback():
    from billiard.exceptions import RestartFreqExceeded

    try:
        raise RestartFreqExceeded("5 in 1s")
    except RestartFreqExceeded:
        info = sys.exc_info()
    record = logging.LogRecord("celery.worker.consumer.consumer", logging.CRITICAL, __file__, 1,
                               "Frequent restarts detected: %r", (info[1],), info)
    assert CeleryOutageFilter().filter(record)
    assert record.exc_info is None and record.getMessage() == "Frequent restarts detected: RestartFreqExceeded('5 in 1s')"


def test_beat_keeps_the_traceback_of_anything_else():
    record = _beat_record(KeyError("bug"))
    assert CeleryOutageFilter().filter(record)
    assert record.exc_info is not None


def test_a_task_message_that_cannot_be_acknowledged_after_a_broker_restart_is_one_warning(caplog):
    """Found by the loss soak: a task that finished just as RabbitMQ restarted made kombu log
    "Couldn't ack" at CRITICAL with a traceback. The broker delivers the message again."""
    from amqp.exceptions import RecoverableConnectionError
    from kombu.message import Message

    from app.logs import quiet_celery_outages

    class Closed:
        no_ack_consumers: set[str] = set()

        def basic_ack(self, *a, **kw):  # type: ignore[no-untyped-def]
            raise RecoverableConnectionError("connection already closed")

    quiet_celery_outages()
    log = logging.getLogger("celery.worker.request")
    msg = Message(body=b"{}", delivery_tag=42, channel=Closed())
    with caplog.at_level(logging.INFO, logger="celery.worker.request"):
        msg.ack_log_error(log, (RecoverableConnectionError,))
    [record] = [r for r in caplog.records if r.name == "celery.worker.request"]
    assert record.levelno == logging.WARNING and record.exc_info is None
    assert record.getMessage().startswith("could not acknowledge task message 42: ")
    assert "connection already closed" in record.getMessage() and "\n" not in record.getMessage()
