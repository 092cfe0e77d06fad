"""The database outage log: one warning per outage, one info line on recovery, and no traceback for
an outage error in any log record."""

from __future__ import annotations

import logging

from sqlalchemy.exc import OperationalError

from app.db.engine import OutageLog, OutageLogFilter, is_outage
from app.domain.errors import NotFound, Unavailable


def refused() -> OperationalError:
    return OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused\nDETAIL: more"))


def test_one_warning_per_outage_and_one_info_on_recovery(caplog):
    t = [100.0]
    outage = OutageLog(monotonic=lambda: t[0])
    with caplog.at_level(logging.INFO, logger="convhub.db"):
        outage.ok()  # no outage: nothing
        for _ in range(50):
            outage.failed(refused())
        t[0] += 15
        outage.ok()
        outage.ok()
        outage.failed(refused())  # a second outage
    msgs = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert msgs == [
        ("WARNING", "database unavailable (ConnectionRefusedError: connection refused); answering 'unavailable' until it is back"),
        ("INFO", "database available again after 15.0 s (50 operations refused meanwhile)"),
        ("WARNING", "database unavailable (ConnectionRefusedError: connection refused); answering 'unavailable' until it is back"),
    ]
    assert all(r.exc_info is None for r in caplog.records)


def test_the_filter_turns_an_outage_traceback_into_one_line():
    try:
        try:
            raise refused()
        except OperationalError as exc:
            raise Unavailable("database unavailable") from exc
    except Unavailable as exc:
        outage_exc = exc
    assert is_outage(outage_exc) and not is_outage(NotFound("x")) and not is_outage(ValueError("x"))
    record = logging.LogRecord("convhub.xmlrpc", logging.WARNING, __file__, 1, "xmlrpc: %s", ("unavailable",),
                               (Unavailable, outage_exc, outage_exc.__traceback__))
    assert OutageLogFilter().filter(record) is True
    assert record.exc_info is None and record.getMessage() == "xmlrpc: unavailable: Unavailable: database unavailable"

    try:
        raise ValueError("a bug")
    except ValueError as exc:
        bug = logging.LogRecord("convhub", logging.ERROR, __file__, 1, "boom", None, (ValueError, exc, exc.__traceback__))
    assert OutageLogFilter().filter(bug) is True and bug.exc_info is not None  # a bug keeps its traceback
