"""The hand-written hostile corpus (tests/hostile/corpus.py) against a live server on SQLite and on
PostgreSQL: every answer is a refusal with one clear line (never a traceback or SQL), the database
is unchanged after every case (a full dump of every table), nothing is logged with a traceback, and
well-formed requests are served before and after."""

from __future__ import annotations

import base64
import os

import pytest

from tests.hostile.conftest import unchanged
from tests.hostile.corpus import CASES, FIELD_SWEEP, META, SHORT_META, Case
from tests.hostile.kit import FACTORY, check_clean, p, s, send, soap, soap_body, xmlrpc, xmlrpc_body

assert len(CASES) >= 200, len(CASES)
assert len({c.id for c in CASES}) == len(CASES), "case ids must be unique"


def well_formed_requests_succeed(target) -> None:  # type: ignore[no-untyped-def]
    counts = send(target, soap(soap_body("getContentConvertCounts")))
    assert counts.status == 200 and b"<status>200</status>" in counts.body, counts.text[:300]
    methods = send(target, xmlrpc(xmlrpc_body("system.listMethods")))
    assert methods.status == 200 and b"jobs.poll" in methods.body and b"fault" not in methods.body, methods.text[:300]


def test_well_formed_requests_before_the_corpus(sqlite_target, postgres_target):
    well_formed_requests_succeed(sqlite_target)
    well_formed_requests_succeed(postgres_target)


# `make test`: every case on SQLite and every third on PostgreSQL; `make soak` (CONVHUB_SOAK=1): all on both.
SOAK = os.environ.get("CONVHUB_SOAK", "") == "1"
ON_POSTGRES = [c for i, c in enumerate(CASES) if SOAK or i % 3 == 0]


def run_case(target, caplog, case: Case) -> None:  # type: ignore[no-untyped-def]
    with unchanged(target, caplog):
        answer = send(target, case.build(target), half_close=case.half_close)
        check_clean(answer, may_succeed=case.read_only, echo=META.values())


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_case_sqlite(sqlite_target, caplog, case: Case):
    run_case(sqlite_target, caplog, case)


@pytest.mark.parametrize("case", ON_POSTGRES, ids=[c.id for c in ON_POSTGRES])
def test_hostile_case_postgres(postgres_target, caplog, case: Case):
    run_case(postgres_target, caplog, case)


# The per-field sweep (every field of every operation and method, and /ops): `make test` three values
# per field on SQLite; `make soak` every value on both databases.
SWEEP = [c for c in FIELD_SWEEP if SOAK or any(c.id.endswith("-" + m) for m in SHORT_META)]
SWEEP_DATABASES = ["sqlite", "postgres"] if SOAK else ["sqlite"]


@pytest.mark.parametrize("db", SWEEP_DATABASES)
@pytest.mark.parametrize("case", SWEEP, ids=[c.id for c in SWEEP])
def test_hostile_field(request, caplog, db, case: Case):
    run_case(request.getfixturevalue(f"{db}_target"), caplog, case)


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
def test_metacharacters_are_stored_verbatim(request, db):
    target = request.getfixturevalue(f"{db}_target")
    """Not refused: a filename full of metacharacters is data, stored and answered as sent."""
    from sqlalchemy import select

    from app.db.models import Content

    name = "O'Brien; DROP TABLE jobs;-- $(id) `id` | ../x %s {{7*7}}.odt"
    from xml.sax.saxutils import escape

    body = soap_body("contentUpload", [("content", base64.b64encode(b"PK ok").decode()), ("filename", escape(name))])
    answer = send(target, soap(body))
    assert b"<status>200</status>" in answer.body, answer.text[:300]
    with target.rt.db.read_session() as session:
        assert name in set(session.scalars(select(Content.filename)))


def test_well_formed_requests_after_the_corpus(sqlite_target, postgres_target):
    for target in (sqlite_target, postgres_target):
        well_formed_requests_succeed(target)
        poll = send(target, xmlrpc(xmlrpc_body("jobs.poll", p(s(FACTORY[0])))))
        assert poll.status == 200 and b"<name>job</name>" in poll.body, poll.text[:300]
