"""A database outage ends when a statement runs again, not when a session that needed no SQL closes.
Found by the loss soak (tests/soak/test_loss.py): during a 5 s PostgreSQL outage the web log held 47
"database unavailable" warnings instead of one, each request answered from a cache having "ended"
the outage ("database available again after 0.0 s") before the next one failed."""

from __future__ import annotations

import logging

from sqlalchemy import text

from app.db.engine import Database
from tests.conftest import sqlite_db


def test_a_session_without_sql_does_not_end_the_outage(tmp_path, caplog):
    db = Database(sqlite_db(tmp_path))
    try:
        with caplog.at_level(logging.INFO, logger="convhub.db"):
            db.outage.failed(ConnectionRefusedError(111, "Connection refused"))
            with db.session():
                pass
            with db.read_session():
                pass
            assert db.run(lambda s: 7) == 7
            assert db.outage.down
            with db.read_session() as s:
                assert s.execute(text("SELECT 1")).scalar() == 1
            assert not db.outage.down
        messages = [r.getMessage().split(" (")[0] for r in caplog.records]
        # The outage's length is wall time (under a loaded machine it can read 0.1 s or more).
        assert [m.split(" after ")[0] for m in messages] == ["database unavailable", "database available again"]
    finally:
        db.dispose()
