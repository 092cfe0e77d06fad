"""Engine and session factory. Built by the composition root; nothing connects at import time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.domain.errors import Unavailable


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=pool_size)
        _sqlite_pragmas(engine)
        return engine
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_recycle=1800)


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

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        self._write = sessionmaker(self.engine, expire_on_commit=False)
        # Reads: on SQLite a deferred BEGIN (never the write lock); on PostgreSQL autocommit, so a
        # read (an empty poll above all) is one round trip instead of BEGIN + query + ROLLBACK.
        read_options: dict[str, object] = {"convhub_readonly": True}
        if not self.is_sqlite:
            read_options["isolation_level"] = "AUTOCOMMIT"
        self._read = sessionmaker(self.engine.execution_options(**read_options), expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A write transaction, committed on success, rolled back on error."""
        with _translate_errors():
            with self._write() as s, s.begin():
                yield s

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A read transaction (deferred on SQLite, so it never takes the write lock)."""
        with _translate_errors():
            with self._read() as s, s.begin():
                yield s
                s.rollback()

    def ping(self) -> None:
        with self.engine.connect() as c:
            c.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


@contextmanager
def _translate_errors() -> Iterator[None]:
    try:
        yield
    except OperationalError as exc:
        # Connection refused, database locked past the busy timeout, server gone: retryable.
        raise Unavailable("database unavailable") from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise Unavailable("database unavailable") from exc
        raise


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
        except Exception:  # noqa: BLE001 - a failed publish is repaired by reconciliation
            import logging

            logging.getLogger("convhub.db").exception("after-commit hook failed")


def _drop_after_commit(session: Session) -> None:
    session.info.pop("convhub_after_commit", None)


event.listen(Session, "after_commit", _run_after_commit)
event.listen(Session, "after_rollback", _drop_after_commit)
