"""The hot path's statements below SQLAlchemy's Core execution layer.

A SQLAlchemy Core statement (built once, in `app.services.statements`) is rendered once per
dialect to the driver's SQL string, its parameter order and the fixed values it carries (IN lists
included), and then run straight on the DBAPI cursor of a pooled connection: no cache-key lookup,
no parameter compilation, no execution context, no result object per execution. psycopg 3 still
prepares a statement it has run a few times on a connection, as it does under SQLAlchemy.

What stays SQLAlchemy's: the pool (checkout, return, recycle), the statement events
(`before_cursor_execute` / `after_cursor_execute`: the round-trip counts and the outage log's "a
statement ran" still see every statement), and the error handling: a driver error is wrapped and
a dead connection invalidated exactly as SQLAlchemy does it, so `Database.run`'s retry on a fresh
connection and the outage answers (Unavailable, fault 503) are unchanged.

Bind and result processing of the statement's types (e.g. `UTCDateTime`) is applied as
SQLAlchemy would apply it. Only what the hot path needs is supported: one statement at a time,
all its rows fetched at once.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session

_Proc = Callable[[Any], Any]


@dataclass(frozen=True)
class Rendered:
    """A statement as its dialect's driver takes it."""

    sql: str
    order: tuple[str, ...] | None  # positional drivers (SQLite's qmark): the parameters' order
    fixed: dict[str, Any]  # the values the statement carries itself (processed)
    procs: dict[str, _Proc]  # bind processors of the parameters given per execution
    row: type  # a named tuple: rows read like SQLAlchemy's (row.id, row[0])
    types: tuple[Any, ...]  # the columns' SQLAlchemy types (their dialect's implementations)
    # Result processors by column index, found at the first execution (they depend on the driver's
    # type codes in the cursor's description).
    results: list[tuple[tuple[int, _Proc], ...]]

    def args(self, params: Mapping[str, Any] | None) -> Any:
        values = dict(self.fixed)
        if params:
            procs = self.procs
            for k, v in params.items():
                p = procs.get(k)
                values[k] = p(v) if p is not None and v is not None else v
        if self.order is None:
            return values
        return tuple(values[k] for k in self.order)

    def rows(self, raw: Sequence[Sequence[Any]], description: Sequence[Any] | None, dialect: Dialect) -> list[Any]:
        make = self.row._make  # type: ignore[attr-defined]
        if not self.results:
            codes = [d[1] for d in description] if description is not None else [None] * len(self.types)
            found = tuple((i, p) for i, (t, code) in enumerate(zip(self.types, codes, strict=False))
                          if (p := t.result_processor(dialect, code)) is not None)
            self.results.append(found)
        results = self.results[0]
        if not results:
            return [make(r) for r in raw]
        out = []
        for r in raw:
            r = list(r)
            for i, p in results:
                r[i] = p(r[i])
            out.append(make(r))
        return out


_rendered: dict[tuple[int, str], tuple[Any, Rendered]] = {}
_lock = threading.Lock()


def render(stmt: Any, dialect: Dialect) -> Rendered:
    """`stmt` rendered for `dialect`, once (statements are built once, so this is kept per statement)."""
    key = (id(stmt), dialect.name)
    found = _rendered.get(key)
    if found is not None and found[0] is stmt:
        return found[1]
    with _lock:
        out = _render(stmt, dialect)
        if len(_rendered) >= 4096:
            _rendered.clear()
        _rendered[key] = (stmt, out)  # the statement is held, so its id is not reused meanwhile
    return out


def _render(stmt: Any, dialect: Dialect) -> Rendered:
    compiled = stmt.compile(dialect=dialect)
    if compiled.escaped_bind_names:
        raise ValueError("hot statements use plain parameter names")
    given = [name for name, b in compiled.binds.items() if b.required and not name.startswith("%(")]
    # IN lists are rendered at execution time ("post-compile"): expanded here once, the values given
    # per execution standing in as NULLs (their placeholders stay parameters).
    state = compiled.construct_expanded_state(dict.fromkeys(given))
    processors = state.processors
    procs = {name: p for name, p in processors.items() if name in compiled.binds}
    fixed: dict[str, Any] = {}
    for name, value in state.parameters.items():
        if name in given:
            continue
        p = processors.get(name)
        fixed[name] = p(value) if p is not None and value is not None else value
    columns = list(stmt.exported_columns)  # a SELECT's columns, or what DML RETURNING gives
    names = [c.key or f"c{i}" for i, c in enumerate(columns)]
    types = tuple(c.type.dialect_impl(dialect) for c in columns)
    order = tuple(state.positiontup) if state.positiontup is not None else None
    sql = state.statement
    if order is None and dialect.paramstyle == "pyformat":
        sql, fixed = _inline(sql, fixed, state.parameters, compiled, dialect)
    return Rendered(sql, order, fixed, procs, namedtuple("HotRow", names, rename=True), types, [])


def _inline(sql: str, fixed: dict[str, Any], raw: Mapping[str, Any], compiled: Any, dialect: Dialect) -> tuple[str, dict[str, Any]]:
    """PostgreSQL: the values a statement carries itself (a pair's application and version, its
    doctypes and formats, small integers) written into the SQL as literals, rendered by their
    types' literal processors (quotes and the driver's % escaped). Left as parameters, they made
    PostgreSQL plan the prepared statement again at every execution (a generic plan cannot use
    them, so it keeps custom plans): ~0.4 ms per probe and ~0.7 ms per claim of planning. With
    them written in, the statement's parameters are only the per-execution values (none for the
    probe, the lease's for the claim), which do not change its plan: planned once per connection.
    Only strings and integers are written in; anything else stays a parameter."""
    kept: dict[str, Any] = {}
    for name, value in fixed.items():
        placeholder = f"%({name})s"
        original = raw.get(name)
        bind = compiled.binds.get(name)
        if bind is None:
            bind = compiled.binds.get(name.rsplit("_", 1)[0])  # an expanded IN item: name_N
        literal = None
        if bind is not None and type(original) in (str, int) and placeholder in sql:
            process = bind.type.dialect_impl(dialect).literal_processor(dialect)
            literal = process(original) if process is not None else None
        if literal is None:
            kept[name] = value
            continue
        sql = sql.replace(placeholder, literal)
    return sql, kept


class HotConnection:
    """One pooled connection in autocommit: each statement is its own transaction (one round trip)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect
        self.dbapi = conn.connection.dbapi_connection

    def rows(self, stmt: Any, params: Mapping[str, Any] | None = None) -> list[Any]:
        r = render(stmt, self.dialect)
        args = r.args(params)
        conn = self.conn
        dispatch = conn.dispatch
        cursor = self.dbapi.cursor()  # type: ignore[union-attr]
        try:
            if dispatch.before_cursor_execute:  # listeners, if any (a count in tests and benchmarks)
                dispatch.before_cursor_execute(conn, cursor, r.sql, args, None, False)
            cursor.execute(r.sql, args)
            # Hot statements return rows (SELECT, or DML with RETURNING). The description (built
            # per call by psycopg) is read once, for the result processors.
            description = None if r.results else cursor.description
            raw = cursor.fetchall()
            if dispatch.after_cursor_execute:  # the outage log's "a statement ran", at least
                dispatch.after_cursor_execute(conn, cursor, r.sql, args, None, False)
        except Exception as exc:
            # SQLAlchemy's own handling: the driver's error wrapped (OperationalError, ...), the
            # connection invalidated when it is dead (and the pool's older ones recycled).
            conn._handle_dbapi_exception(exc, r.sql, args, cursor, None)
            raise  # pragma: no cover - _handle_dbapi_exception always raises
        finally:
            cursor.close()
        return r.rows(raw, description, self.dialect)

    def first(self, stmt: Any, params: Mapping[str, Any] | None = None) -> Any:
        found = self.rows(stmt, params)
        return found[0] if found else None


Runner = Session | HotConnection


def rows(on: Runner, stmt: Any, params: Mapping[str, Any] | None = None) -> list[Any]:
    """The rows of `stmt`, on a hot connection or in a session's transaction (the same statement)."""
    if isinstance(on, HotConnection):
        return on.rows(stmt, params)
    return list(on.execute(stmt, params or {}).all())


def is_postgresql(on: Runner) -> bool:
    dialect = on.dialect if isinstance(on, HotConnection) else on.get_bind().dialect
    return dialect.name == "postgresql"


def first(on: Runner, stmt: Any, params: Mapping[str, Any] | None = None) -> Any:
    found = rows(on, stmt, params)
    return found[0] if found else None
