"""Fixtures of the hostile-input tests: one live server per database per module, seeded with two
clients, a factory, uploads and jobs; a raw HTTP sender; a full dump of every table."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import (
    FakeClock,
    add_client,
    add_factory,
    close_runtime,
    make_settings,
    sqlite_db,
    start_server,
    submit_job,
    truncate_pg,
)
from tests.hostile.kit import Target, dump

OPERATOR = ("admin", "op-secret-hostile")


@pytest.fixture(scope="module")
def sqlite_target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from _target(request, tmp_path_factory, "sqlite")


@pytest.fixture(scope="module")
def postgres_target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    yield from _target(request, tmp_path_factory, "postgres")


def _target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, db: str) -> Iterator[Target]:
    from app.runtime import build_runtime

    tmp = tmp_path_factory.mktemp("hostile")
    if db == "sqlite":
        url = sqlite_db(tmp)
    else:
        url = request.getfixturevalue("pg_database")
        truncate_pg(url)
    settings = make_settings(tmp, database_url=url, operator_user=OPERATOR[0], operator_password=OPERATOR[1])
    rt = build_runtime(settings, clock=FakeClock(), broker=True)
    jobs, my_content, their_content = seed(rt)
    srv = start_server(rt)
    t = Target(srv, rt, db, jobs=jobs, my_content=my_content, their_content=their_content)
    yield t
    srv.stop()
    close_runtime(rt)


def seed(rt):  # type: ignore[no-untyped-def]
    """Two clients, two factories, three jobs (two mine, one theirs): returns (jobs, my upload's
    identifier, theirs)."""
    from sqlalchemy import select

    from app.db.models import Content

    mine = add_client(rt, "petshow", "Wf")
    theirs = add_client(rt, "other", "other-secret")
    add_factory(rt, "factory-1", "factory-secret-1")
    add_factory(rt, "factory-2", "factory-secret-2")
    jobs = [submit_job(rt, mine) for _ in range(2)] + [submit_job(rt, theirs)]
    with rt.db.read_session() as s:
        contents = {c.client_id: c.identifier for c in s.scalars(select(Content))}
    return jobs, contents[mine], contents[theirs]


@contextmanager
def unchanged(target: Target, caplog: pytest.LogCaptureFixture) -> Iterator[Target]:
    """The database is the same after the block as before it, and nothing was logged with a traceback."""
    before = dump(target.rt)
    with caplog.at_level(logging.INFO):
        yield target
    assert dump(target.rt) == before, "a rejected request changed the database"
    # werkzeug logs a refused request line at ERROR ("code 400, message ..."): one line, no traceback.
    bad = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage() or (r.levelno >= logging.ERROR and r.name != "werkzeug")]
    assert not bad, [(r.name, r.getMessage()[:200]) for r in bad]
