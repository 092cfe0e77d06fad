"""Engine and session factory. Built by the composition root; nothing connects at import time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from app.db.hot import HotConnection
from app.domain.errors import Unavailable

log = logging.getLogger("convhub.db")

T = TypeVar("T")


def make_engine(url: str, *, pool_size: int = 10, statement_timeout: float = 0) -> Engine:
    """`statement_timeout` (seconds, PostgreSQL; 0: none): set on every connection as the server's
    `statement_timeout` (a statement, lock waits included, is cancelled past it) and
    `idle_in_transaction_session_timeout` (a transaction left open without a statement that long
    ends its session), so that no request holds a connection for ever."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=pool_size)
        _sqlite_pragmas(engine)
        return engine
    # No pre-ping: it would cost a round trip per checkout on the hot path. Connections are recycled
    # after 30 minutes, and a request that finds its pooled connection dead (a server restart, a
    # killed backend) runs once more on a fresh one (`Database.run`); SQLAlchemy then recycles
    # every connection older than the failure on its next checkout.
    connect_args: dict[str, object] = {}
    if statement_timeout > 0:
        ms = int(statement_timeout * 1000)
        connect_args["options"] = f"-c statement_timeout={ms} -c idle_in_transaction_session_timeout={ms}"
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False, pool_recycle=1800,
                         connect_args=connect_args)


# SQLSTATE of a statement cancelled by statement_timeout (query_canceled), of a lock not granted
# within lock_timeout (lock_not_available), and of a session ended by
# idle_in_transaction_session_timeout.
_TIMED_OUT = {"57014", "55P03", "25P03"}


def _sqlstate(exc: DBAPIError) -> str:
    orig = exc.orig
    return str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")


def _sqlite_pragmas(engine: Engine) -> None:
    # pysqlite's own transaction handling is turned off so that we emit BEGIN ourselves:
    # writers take BEGIN IMMEDIATE (wait on the busy timeout instead of failing on a lock upgrade).
    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        mode = "BEGIN" if conn.get_execution_options().get("convhub_readonly") else "BEGIN IMMEDIATE"
        conn.exec_driver_sql(mode)


class Database:
    """Owns the engine and hands out sessions: `session()` for writes, `read_session()` for reads."""

    def __init__(self, url: str, *, pool_size: int = 10, statement_timeout: float = 0) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, statement_timeout=statement_timeout)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        # Reads: on SQLite a deferred BEGIN (never the write lock); on PostgreSQL autocommit, so a
        # read (an empty poll above all) is one round trip instead of BEGIN + query + ROLLBACK.
        read_options: dict[str, object] = {"convhub_readonly": True}
        if not self.is_sqlite:
            read_options["isolation_level"] = "AUTOCOMMIT"
        self._read = sessionmaker(self.engine.execution_options(**read_options), expire_on_commit=False)
        # One-statement writes on PostgreSQL (the claim): autocommit, no BEGIN/COMMIT round trips.
        self._auto = sessionmaker(self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False)
        self.outage = OutageLog()
        # The outage ends when a statement has run, not when a session closes: a session that needed
        # no SQL (an answer from a cache) ended it falsely, and the next failure logged a new
        # "database unavailable" warning, once per request instead of once per outage.
        event.listen(self.engine, "after_cursor_execute", self._statement_ran)

    def _statement_ran(self, *_: object) -> None:
        self.outage.ok()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction, committed on success, rolled back on error."""
        with self._translate_errors():
            with self._write() as s, s.begin():
                yield s

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A read transaction (deferred on SQLite, so it never takes the write lock)."""
        with self._translate_errors():
            with self._read() as s, s.begin():
                yield s
                s.rollback()

    def run(
        self, fn: Callable[[Session], T], *, read: bool = False, autocommit: bool = False, may_retry: Callable[[], bool] | None = None
    ) -> T:
        """`fn(session)` in one transaction (`read`: a read session), run once more on a fresh
        connection when the pooled one was found dead (the stand-in for pre-ping). A dead
        connection has committed nothing, and after-commit hooks are dropped with its rollback.

        `autocommit` (PostgreSQL): no BEGIN/COMMIT around `fn`, for one statement that is atomic on
        its own (the claim): one round trip. On SQLite it is a write transaction. `may_retry`: False
        once `fn` has consumed what it cannot read again (a request body being stored)."""
        for attempt in (1, 2):
            try:
                with self._translate_errors(retryable=attempt == 1 and (may_retry is None or may_retry())):
                    out = self._run_once(fn, read, autocommit)
            except _DeadConnection:
                log.info("a pooled database connection was dead; running the request on a fresh one")
                continue
            return out
        raise AssertionError("unreachable")

    def hot(self, fn: Callable[[HotConnection], T]) -> T:
        """`fn` on one pooled connection in autocommit, its statements run below SQLAlchemy's Core
        execution layer (`app.db.hot`): each statement is its own transaction, one round trip, on
        SQLite too. For the hot path's reads and its one-statement writes. A dead pooled connection:
        `fn` runs once more on a fresh one, as in `run`; outages are answered as in `run`."""
        for attempt in (1, 2):
            try:
                with self._translate_errors(retryable=attempt == 1), self.engine.connect() as conn:
                    return self._hot_once(conn, fn)
            except _DeadConnection:
                log.info("a pooled database connection was dead; running the request on a fresh one")
                continue
        raise AssertionError("unreachable")

    def _hot_once(self, conn: Connection, fn: Callable[[HotConnection], T]) -> T:
        if self.is_sqlite:  # pysqlite's own transactions are off: its connections are in autocommit
            return fn(HotConnection(conn))
        # psycopg's autocommit switched on and off here: a local attribute, no round trip, and half
        # the cost of SQLAlchemy's isolation-level option on every checkout and return.
        dbapi = conn.connection.dbapi_connection
        dbapi.autocommit = True  # type: ignore[union-attr]
        try:
            return fn(HotConnection(conn))
        finally:
            if not conn.invalidated:
                try:
                    dbapi.autocommit = False  # type: ignore[union-attr]
                except Exception:  # a broken connection must not go back to the pool as it is
                    conn.invalidate()

    def _run_once(self, fn: Callable[[Session], T], read: bool, autocommit: bool) -> T:
        if autocommit and not self.is_sqlite:
            with self._auto() as s:
                return fn(s)
        with self._read() if read else self._write() as s, s.begin():
            out = fn(s)
            if read:
                s.rollback()
            return out

    def ping(self) -> None:
        with self._translate_errors():
            with self.engine.connect() as c:
                c.execute(text("SELECT 1"))

    @contextmanager
    def _translate_errors(self, *, retryable: bool = False) -> Iterator[None]:
        """Connection refused, database locked past the busy timeout, server gone, pool exhausted:
        Unavailable (retryable; the adapters answer fault 503 / status 599). The first such failure
        of an outage is logged once here; the requests themselves log one line each, no traceback."""
        try:
            yield
        except DBAPIError as exc:
            if _sqlstate(exc) in _TIMED_OUT:
                # Not an outage (the database answers): the same retryable answer as one (fault
                # 503 / status 599), and the one line the request logs says why.
                log.debug("statement timed out: %s", describe_error(exc))
                raise Unavailable("database busy: a statement ran past its time limit") from exc
            if retryable and exc.connection_invalidated:
                raise _DeadConnection() from exc
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                self.outage.failed(exc)
                raise Unavailable("database unavailable") from exc
            raise
        except PoolTimeout as exc:
            self.outage.failed(exc)
            raise Unavailable("database unavailable") from exc

    def dispose(self) -> None:
        self.engine.dispose()


class _DeadConnection(Exception):
    """A pooled connection was found dead (SQLAlchemy invalidated it); `Database.run` retries once."""


class OutageLog:
    """One WARNING when the database becomes unreachable and one INFO line when it answers again
    (per process), instead of a traceback per failing request."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._now = monotonic
        self._lock = threading.Lock()
        self._since: float | None = None
        self._refused = 0

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self._refused += 1
            first = self._since is None
            if first:
                self._since = self._now()
        if first:
            log.warning("database unavailable (%s); answering 'unavailable' until it is back", describe_error(exc))

    def ok(self) -> None:
        if self._since is None:  # the usual case: no lock
            return
        with self._lock:
            since, refused = self._since, self._refused
            self._since, self._refused = None, 0
        if since is not None:
            log.info("database available again after %.1f s (%d operations refused meanwhile)", self._now() - since, refused)


def describe_error(exc: BaseException) -> str:
    """`ClassName: first line of the message` of an error (the driver's own when SQLAlchemy wraps one),
    without the SQL or parameters SQLAlchemy appends."""
    inner = getattr(exc, "orig", None) or exc
    lines = str(inner).strip().splitlines()
    text_ = lines[0] if lines else ""
    return f"{inner.__class__.__name__}: {text_[:200]}" if text_ else inner.__class__.__name__


def is_outage(exc: BaseException | None) -> bool:
    """True for the errors of an unreachable database (or broker): expected, retryable, not a bug.
    Follows the chain of causes (`raise Unavailable(...) from exc`)."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, Unavailable | OperationalError | PoolTimeout):
            return True
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        # A broker's (kombu, py-amqp, redis-py) and the OS's "cannot connect" errors.
        if isinstance(exc, ConnectionError) or exc.__class__.__name__ in ("OperationalError", "ConnectionError"):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class OutageLogFilter(logging.Filter):
    """A log record carrying an outage error keeps its message and gets the error's one-line summary
    instead of a traceback: during an outage every failing request logs one line, not 30."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and is_outage(exc):
            record.msg = f"{record.getMessage()}: {describe_error(exc)}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def after_commit(session: Session, fn: object) -> None:
    """Run `fn()` once this session's transaction has committed; dropped on rollback.

    This is how a job's message is published only after its row is committed.
    """
    session.info.setdefault("convhub_after_commit", []).append(fn)


def _run_after_commit(session: Session) -> None:
    pending = session.info.pop("convhub_after_commit", [])
    for fn in pending:
        try:
            fn()  # type: ignore[operator]
        except Exception as exc:  # a failed publish is repaired by reconciliation
            if is_outage(exc):
                log.warning("after-commit hook failed (%s); reconciliation repairs it", describe_error(exc))
            else:
                log.exception("after-commit hook failed")


def _drop_after_commit(session: Session) -> None:
    session.info.pop("convhub_after_commit", None)


event.listen(Session, "after_commit", _run_after_commit)
event.listen(Session, "after_rollback", _drop_after_commit)
