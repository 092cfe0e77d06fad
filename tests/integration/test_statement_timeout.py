"""No request holds a PostgreSQL connection for ever: the server's statement_timeout, set on every
connection of the web app's engine (CONVHUB_STATEMENT_TIMEOUT_SECONDS), cancels a statement that
waits past it (here: on a row another connection keeps locked), and the request gets the answer of
an outage (fault 503 / status 599) with one log line (as `convhub web` logs, with its filter that
turns an outage's traceback into one line), not a hang, a traceback or an outage warning."""

from __future__ import annotations

import logging
import xmlrpc.client
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

from app.config import load_settings
from app.db.engine import Database, OutageLogFilter
from app.domain.errors import Unavailable
from tests.conftest import add_client, add_factory, start_server, submit_job
from tests.integration.xmlrpc.xrkit import proxy


@contextmanager
def row_locked(url: str, table: str, row_id: int) -> Iterator[None]:
    """Another session holds the row's lock (FOR UPDATE) until the block ends."""
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            c.execute(text(f"SELECT id FROM {table} WHERE id = :id FOR UPDATE"), {"id": row_id})
            yield
            c.rollback()
    finally:
        engine.dispose()


def _timeout_setting(db: Database) -> str:
    with db.read_session() as s:
        return str(s.execute(text("SHOW statement_timeout")).scalar())


def test_settings_defaults_and_override():
    s = load_settings({})
    assert (s.statement_timeout_seconds, s.maintenance_statement_timeout_seconds) == (30, 600)
    s = load_settings({"CONVHUB_STATEMENT_TIMEOUT_SECONDS": "0", "CONVHUB_MAINTENANCE_STATEMENT_TIMEOUT_SECONDS": "7"})
    assert (s.statement_timeout_seconds, s.maintenance_statement_timeout_seconds) == (0, 7)


def test_web_and_maintenance_runtimes_get_their_own_timeout(make_runtime, pg_url):
    from app.runtime import build_runtime
    from tests.conftest import close_runtime

    web = make_runtime(database_url=pg_url, broker=False, statement_timeout_seconds=30, maintenance_statement_timeout_seconds=600)
    assert _timeout_setting(web.db) == "30s"
    worker = build_runtime(web.settings, broker=False, maintenance=True)
    try:
        assert _timeout_setting(worker.db) == "10min"
    finally:
        close_runtime(worker)
    off = make_runtime(database_url=pg_url, broker=False, statement_timeout_seconds=0)
    assert _timeout_setting(off.db) == "0"  # the server's default: none


def test_statement_waiting_on_a_lock_past_the_timeout_is_unavailable(make_runtime, pg_url, caplog):
    rt = make_runtime(database_url=pg_url, broker=False, statement_timeout_seconds=1)
    client = add_client(rt)
    with row_locked(pg_url, "client_applications", client), caplog.at_level(logging.INFO, logger="convhub.db"):
        with pytest.raises(Unavailable, match="time limit"):
            rt.db.run(lambda s: s.execute(text("UPDATE client_applications SET name = name WHERE id = :id"), {"id": client}))
    assert not rt.db.outage.down  # the database answered: no outage was declared, nor logged
    assert not [r for r in caplog.records if r.name == "convhub.db"]
    rt.db.run(lambda s: s.execute(text("UPDATE client_applications SET name = name WHERE id = :id"), {"id": client}))  # lock gone: fine


def test_finish_blocked_by_a_locked_job_gets_fault_503_then_succeeds(make_runtime, pg_url, caplog):
    rt = make_runtime(database_url=pg_url, broker=False, statement_timeout_seconds=1)
    client = add_client(rt)
    add_factory(rt)
    job_id, _ = submit_job(rt, client)
    srv = start_server(rt)
    try:
        fp = proxy(srv.url, "factory-1", "factory-secret-1")
        job = fp.jobs.poll("factory-1")
        assert job
        result = xmlrpc.client.Binary(b"%PDF-1.7 timed")
        # The fast finish skips a locked row; the general path waits for the lock, past the timeout.
        caplog.handler.addFilter(OutageLogFilter())
        with row_locked(pg_url, "jobs", job_id), caplog.at_level(logging.WARNING):
            with pytest.raises(xmlrpc.client.Fault) as fault:
                fp.jobs.finish("factory-1", job["job"], "pdf", result, job["lease"])
        assert fault.value.faultCode == 503, fault.value
        assert "SELECT" not in fault.value.faultString
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "time limit" in warnings[0].getMessage(), caplog.text
        assert "Traceback" not in caplog.text
        assert fp.jobs.finish("factory-1", job["job"], "pdf", result, job["lease"])  # the factory's retry
    finally:
        srv.stop()


def test_soap_delete_blocked_by_a_locked_job_gets_status_599(make_runtime, pg_url, caplog):
    from tests.integration.soap.soapkit import call

    rt = make_runtime(database_url=pg_url, broker=False, statement_timeout_seconds=1)
    client = add_client(rt)
    job_id, _ = submit_job(rt, client)
    srv = start_server(rt)
    try:
        caplog.handler.addFilter(OutageLogFilter())
        with row_locked(pg_url, "jobs", job_id), caplog.at_level(logging.WARNING):
            reply = call(srv, "deleteContentConversion", [("jobId", job_id)])
        assert reply.status == 599, reply.text[:300]
        assert "SELECT" not in reply.text and "Traceback" not in caplog.text
        assert call(srv, "deleteContentConversion", [("jobId", job_id)]).status == 200  # the lock gone: done
    finally:
        srv.stop()
