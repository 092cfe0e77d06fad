"""`app.db.hot`: a Core statement run on the DBAPI cursor answers what SQLAlchemy's execution answers
(IN lists, typed parameters and results), its errors are SQLAlchemy's, and the pooled connection
goes back to the pool as it came (PostgreSQL: autocommit off again, so transactions still BEGIN)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, event, insert, literal_column, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.db import hot
from app.db.models import ClientApplication, Job
from tests.conftest import add_client
from tests.integration.test_fair_share import _flood

JOBS = Job.__table__
SINCE = datetime(2020, 1, 1, tzinfo=UTC)


def _statement():  # type: ignore[no-untyped-def]
    # An IN list (expanded once when rendered), a fixed value, a typed parameter given per execution.
    return (
        select(JOBS.c.id, JOBS.c.guid, JOBS.c.submitted_at, JOBS.c.vtag)
        .where(JOBS.c.doctype.in_(["odt", "ods"]), JOBS.c.state == literal_column("0"), JOBS.c.submitted_at >= bindparam("since"))
        .order_by(JOBS.c.id)
    )


def test_rows_are_what_a_session_reads(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    ids = _flood(rt, add_client(rt), 3)
    stmt = _statement()
    with rt.db.read_session() as s:
        expected = [tuple(r) for r in s.execute(stmt, {"since": SINCE})]
    got = rt.db.hot(lambda h: h.rows(stmt, {"since": SINCE}))
    assert [r.id for r in got] == ids
    assert [tuple(r) for r in got] == expected
    assert all(isinstance(r.submitted_at, datetime) and r.submitted_at.tzinfo is not None for r in got)
    later = expected[-1][2] + timedelta(seconds=1)
    assert rt.db.hot(lambda h: h.rows(stmt, {"since": later})) == []
    # Twice more on the same statement: rendered once, the same answer.
    assert [tuple(r) for r in rt.db.hot(lambda h: h.rows(stmt, {"since": SINCE}))] == expected
    # The same statement through a session (what the transactional paths pass): the same rows.
    with rt.db.read_session() as s:
        assert [tuple(r) for r in hot.rows(s, stmt, {"since": SINCE})] == expected
    assert rt.db.hot(lambda h: hot.first(h, stmt, {"since": SINCE})).id == ids[0]


def test_each_statement_is_seen_by_the_statement_events(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    seen: list[str] = []

    def on_statement(conn, cursor, statement, *a):  # type: ignore[no-untyped-def]
        seen.append(statement)

    event.listen(rt.db.engine, "before_cursor_execute", on_statement)
    try:
        rt.db.hot(lambda h: (h.rows(_statement(), {"since": SINCE}), h.rows(select(ClientApplication.id))))
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", on_statement)
    assert len(seen) == 2 and seen[0].lstrip().upper().startswith("SELECT")


def test_errors_are_sqlalchemys_and_the_connection_stays_usable(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, broker=False)
    cid = add_client(rt)
    [job_id] = _flood(rt, cid, 1)
    with rt.db.read_session() as s:
        guid = s.scalar(select(Job.guid).where(Job.id == job_id))
    dup = (
        insert(JOBS)
        .from_select(
            [c.name for c in JOBS.c if c.name != "id"],
            select(*[c for c in JOBS.c if c.name != "id"]).where(JOBS.c.id == bindparam("src")),
        )
        .returning(JOBS.c.id)
    )
    with pytest.raises(IntegrityError) as caught:  # the guid is unique
        rt.db.hot(lambda h: h.rows(dup, {"src": job_id}))
    assert isinstance(caught.value, DBAPIError) and not caught.value.connection_invalidated
    assert guid  # the copied row's guid, which the copy repeats
    # The pool's connections still work, in autocommit (hot) and in transactions (sessions).
    rows = rt.db.hot(lambda h: h.rows(update(JOBS).where(JOBS.c.id == bindparam("j")).values(priority=3).returning(JOBS.c.priority), {"j": job_id}))
    assert [r.priority for r in rows] == [3]
    with rt.db.session() as s:
        s.execute(update(Job).where(Job.id == job_id).values(priority=4))
    with rt.db.read_session() as s:
        assert s.scalar(select(Job.priority).where(Job.id == job_id)) == 4


def test_postgresql_connections_return_to_the_pool_out_of_autocommit(make_runtime, pg_url):
    rt = make_runtime(database_url=pg_url, broker=False)
    assert rt.db.hot(lambda h: h.dbapi.autocommit) is True
    with rt.db.engine.connect() as conn:
        assert conn.connection.dbapi_connection.autocommit is False


def test_postgresql_statements_carry_their_own_values_as_literals(make_runtime, pg_url):
    """On PostgreSQL the values a statement carries itself are written into its SQL (as parameters
    they kept the prepared statement re-planned at every execution); a quote, a percent sign and a
    backslash in them are written safely and still match exactly. Per-execution values stay
    parameters. The probe of a factory's pairs has no parameter left at all."""
    from app.domain.matching import WorkerSpec
    from app.services import statements as sql

    rt = make_runtime(database_url=pg_url, broker=False)
    ids = _flood(rt, add_client(rt), 2)
    odd = "O'Brien 100% \\ %(since)s"
    rt.db.hot(lambda h: h.rows(update(JOBS).where(JOBS.c.id == ids[0]).values(application=odd).returning(JOBS.c.id)))
    stmt = select(JOBS.c.id).where(JOBS.c.application == odd, JOBS.c.submitted_at >= bindparam("since"))
    rendered = hot.render(stmt, rt.db.engine.dialect)
    assert rendered.fixed == {} and "%(since)s" in rendered.sql and "%(application" not in rendered.sql
    assert [r.id for r in rt.db.hot(lambda h: h.rows(stmt, {"since": SINCE}))] == [ids[0]]
    assert rt.db.hot(lambda h: h.rows(select(JOBS.c.id).where(JOBS.c.application == "O'Brien"))) == []
    workers = (WorkerSpec("LibreOffice Writer", "7.4", frozenset({"odt"}), frozenset({"pdf"})),)
    probe = hot.render(sql.probe_query(workers)[1], rt.db.engine.dialect)
    assert probe.fixed == {} and "%(" not in probe.sql
