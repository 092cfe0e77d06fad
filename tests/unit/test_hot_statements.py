"""The lease holders' statements and the claim's UPDATEs are built once at import and are plain Core:
no ORM plugin (which would run them through the ORM's bulk-update evaluation), and they compile on
both dialects without a database."""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from app.services import statements as sql

HOT = {
    "HELD": list(sql.HELD.values()),
    "FINISHING": list(sql.FINISHING.values()),
    "FENCED": [sql.FENCED_EXTEND, sql.FENCED_END, sql.FENCED_COMPLETE],
    "FINISH_AT_ONCE": list(sql.FINISH_AT_ONCE.values()),
    "INSERTS": [sql.INSERT_BLOB, sql.INSERT_CHUNK, sql.INSERT_RESULT],
    "CLAIM_BY_ID": list(sql.CLAIM_BY_ID.values()),
    "SWAP_VTAG": [sql.SWAP_VTAG],
}


@pytest.mark.parametrize("name", sorted(HOT))
def test_hot_statements_are_core(name):
    for stmt in HOT[name]:
        assert stmt._propagate_attrs.get("compile_state_plugin") != "orm", name  # type: ignore[attr-defined]
        for dialect in (postgresql.dialect(), sqlite.dialect()):
            if stmt is sql.FINISH_AT_ONCE[(True, True)] or stmt is sql.FINISH_AT_ONCE[(True, False)]:
                if dialect.name == "sqlite":
                    continue  # PostgreSQL only: DML in a CTE
            assert str(stmt.compile(dialect=dialect))


def test_finish_at_once_is_one_statement_of_data_modifying_ctes():
    text = str(sql.FINISH_AT_ONCE[(True, True)].compile(dialect=postgresql.dialect()))
    for cte in ("WITH u AS", "b AS", "c AS", "r AS"):
        assert cte in text
    assert "FOR UPDATE SKIP LOCKED" in text and text.count("INSERT INTO") == 3
