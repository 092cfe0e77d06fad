"""Shared fixtures: real databases and brokers, a controllable clock, a live server on a socket.

A fixture that needs PostgreSQL, Redis or RabbitMQ skips when the service is missing on a laptop
but FAILS when CI=true (so CI can never go green by skipping).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

# pytest-celery 1.x registers Celery's in-process fixtures (celery_app, celery_worker, ...) and then
# shadows `celery_worker` with its Docker-based worker, which cannot run here (no Docker engine).
# Re-export the in-process one so `celery_worker` starts a real worker thread on the test broker.
from celery.contrib.pytest import celery_worker  # noqa: F401

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PG_ADMIN_URL = os.environ.get("CONVHUB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")

# `make test` runs the suite in parallel (pytest-xdist): worker gwN is process N of WORKERS. What the
# workers would otherwise share is split between them: the Redis database (below), the ports of
# `free_port`, the PostgreSQL database (one per session) and RabbitMQ vhosts (one per test).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
WORKER_INDEX = int(_WORKER[2:]) if _WORKER.startswith("gw") and _WORKER[2:].isdigit() else 0
WORKERS = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1))


def _worker_redis_url(url: str) -> str:
    """The configured Redis URL with its database number moved down by the worker's index (gw0
    keeps it): each worker flushes only its own database."""
    base, _, db = url.rstrip("/").rpartition("/")
    if not base.startswith("redis://") or not db.isdigit():
        base, db = url.rstrip("/"), "0"
    return f"{base}/{(int(db) - WORKER_INDEX) % 16}"


REDIS_URL = _worker_redis_url(os.environ.get("CONVHUB_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
AMQP_URL = os.environ.get("CONVHUB_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")


def require(service: str, ok: bool, why: str = "") -> None:
    if ok:
        return
    msg = f"{service} is not reachable{': ' + why if why else ''}"
    if IN_CI:
        pytest.fail(f"{msg} (CI=true: real services are required)")
    pytest.skip(msg)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


_PORTS_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A port for a server a test starts itself (often in a subprocess, so it cannot bind port 0).

    Chosen below the kernel's ephemeral range: the outgoing connections of everything else on the
    machine take their ports from that range and could grab one between this check and the
    server's bind. Never the same port twice in one test session; parallel workers draw from
    separate slices of the range.
    """
    import random

    low = _ephemeral_low()
    start = max(1024, low - 8000)
    width = (low - start) // WORKERS
    start += width * (WORKER_INDEX % WORKERS)
    for _ in range(200):
        port = random.randrange(start, start + width)
        if port in _PORTS_HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_HANDED_OUT.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port where connections are refused for the whole test: bound (so nobody else can listen
    on it) but never listening. A port that was merely free a moment ago could be taken meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def wait_for(  # type: ignore[no-untyped-def]
    pred,
    timeout: float,
    what: str,
    interval: float = 0.05,
    *,
    ignore: tuple[type[BaseException], ...] = (),
    details=None,
):
    """Poll `pred` until it returns something truthy (returned), or fail after `timeout` seconds.

    The one way tests wait on other threads and processes: never a sleep followed by an assertion,
    never a timing assertion. `ignore`: exceptions that mean "not yet" (a server still starting);
    `details`: called on timeout for text to add to the failure (e.g. the tails of logs).
    """
    import time

    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = pred()
        except ignore as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    extra = f"\n{details()}" if details is not None else ""
    raise AssertionError(f"timed out waiting for {what}; last={last!r}{extra}")


class FakeClock:
    """An injectable clock: tests move time instead of sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.t = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.t

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self.t += timedelta(seconds=seconds)
            return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# ------------------------------------------------------------------ databases

_SQLITE_TEMPLATE: dict[str, Path] = {}


def sqlite_db(tmp_path: Path) -> str:
    """A migrated SQLite database file: migrated once per session, copied per test."""
    from app.db.migrate import upgrade

    if "path" not in _SQLITE_TEMPLATE:
        tpl = Path(os.environ.get("PYTEST_TMPDIR", "/tmp")) / f"convhub-template-{os.getpid()}.db"
        tpl.unlink(missing_ok=True)
        upgrade(f"sqlite:///{tpl}")
        _SQLITE_TEMPLATE["path"] = tpl
    dst = tmp_path / "convhub.db"
    shutil.copyfile(_SQLITE_TEMPLATE["path"], dst)
    return f"sqlite:///{dst}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated with Alembic."""
    require("PostgreSQL", port_open("127.0.0.1", 5432))
    from sqlalchemy import create_engine, text

    from app.db.migrate import upgrade

    name = f"convhub_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    yield url
    with admin.connect() as c:
        c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def truncate_pg(url: str) -> None:
    from sqlalchemy import create_engine, text

    from app.db.models import Base

    eng = create_engine(url)
    with eng.begin() as c:
        names = ", ".join(t.name for t in Base.metadata.sorted_tables)
        c.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    eng.dispose()


@pytest.fixture
def pg_url(pg_database: str) -> str:
    truncate_pg(pg_database)
    return pg_database


@pytest.fixture(params=["sqlite", "postgres"])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return sqlite_db(tmp_path)
    return request.getfixturevalue("pg_url")


# ------------------------------------------------------------------ brokers


def redis_ok() -> bool:
    return port_open("127.0.0.1", 6379)


def amqp_ok() -> bool:
    return port_open("127.0.0.1", 5672)


@pytest.fixture
def redis_broker_url() -> Iterator[str]:
    require("Redis", redis_ok())
    import redis

    r = redis.Redis.from_url(REDIS_URL)
    r.flushdb()
    yield REDIS_URL
    r.flushdb()
    r.close()


@pytest.fixture
def amqp_broker_url() -> Iterator[str]:
    require("RabbitMQ", amqp_ok())
    vhost = f"convhub-test-{uuid.uuid4().hex[:8]}"
    # A private vhost per test keeps queues apart; created through rabbitmqctl when available.
    import subprocess

    made = subprocess.run(["rabbitmqctl", "add_vhost", vhost], capture_output=True, timeout=60).returncode == 0
    if made:
        subprocess.run(["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"], capture_output=True, timeout=60)
        yield AMQP_URL.rstrip("/") + "/" + vhost
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)
    else:
        yield AMQP_URL


# ------------------------------------------------------------------ runtime and server


def make_settings(tmp_path: Path, *, database_url: str | None = None, broker_url: str | None = None, **kw: object):  # type: ignore[no-untyped-def]
    from app.config import Settings

    data = tmp_path / "var"
    data.mkdir(exist_ok=True)
    # Every test talks from 127.0.0.1 and many send wrong secrets on purpose: throttling of failed
    # authentications is off unless a test turns it on (tests/hostile/test_throttle.py).
    params: dict[str, object] = {"auth_throttle_per_name": 0, "auth_throttle_per_address": 0}
    params.update(kw)
    return Settings(
        data_dir=data,
        database_url=database_url or sqlite_db(tmp_path),
        broker_url=broker_url or f"sqla+sqlite:///{data / 'broker.db'}",
        callback_allow_private=True,
        auth_cache_seconds=60,
        **params,  # type: ignore[arg-type]
    )


def celery_test_config(settings) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """pytest-celery's `celery_config` for an in-process worker: our production configuration
    (make_celery) on the broker under test, with an in-memory result backend."""
    from tasks.celery_app import make_celery

    conf = dict(make_celery(settings).conf)
    keep = {k: conf[k] for k in ("broker_url", "broker_transport_options", "task_default_queue", "task_queues",
                                 "task_serializer", "accept_content", "task_acks_late",
                                 "worker_prefetch_multiplier", "enable_utc", "timezone")}
    keep["result_backend"] = "cache+memory://"
    return keep


@pytest.fixture
def make_runtime(tmp_path: Path, clock: FakeClock):  # type: ignore[no-untyped-def]
    """Build runtimes on demand; all are closed at teardown."""
    from app.runtime import build_runtime

    made = []

    def _make(*, broker: bool = True, **settings_kw: object):  # type: ignore[no-untyped-def]
        rt = build_runtime(make_settings(tmp_path, **settings_kw), clock=clock, broker=broker)  # type: ignore[arg-type]
        made.append(rt)
        return rt

    yield _make
    for rt in made:
        close_runtime(rt)


def close_runtime(rt) -> None:  # type: ignore[no-untyped-def]
    """Close the runtime's database and broker pools (kombu's producer pools are process-global)."""
    import kombu.pools

    if rt.celery is not None:
        rt.celery.pool.force_close_all()
        kombu.pools.reset()
    rt.close()


@pytest.fixture
def runtime(make_runtime):  # type: ignore[no-untyped-def]
    """SQLite + the embedded sqla broker in a temp dir, with a FakeClock."""
    return make_runtime()


@dataclass
class LiveServer:
    url: str
    runtime: object
    _server: object

    def stop(self) -> None:
        self._server.shutdown()  # type: ignore[attr-defined]


@pytest.fixture
def live_server(runtime) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    """The real WSGI app (Flask + SOAP) served over a loopback socket in a thread."""
    srv = start_server(runtime)
    yield srv
    srv.stop()


def start_server(rt) -> LiveServer:  # type: ignore[no-untyped-def]
    from werkzeug.serving import make_server

    from app.web import create_app

    app = create_app(rt)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    port = server.server_port
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return LiveServer(f"http://127.0.0.1:{port}", rt, server)


# ------------------------------------------------------------------ data helpers

WRITER = "LibreOffice Writer|7.4|odt|pdf,png,odf"


def add_client(rt, name: str = "petshow", secret: str = "Wf") -> int:  # type: ignore[no-untyped-def]
    from app.services import admin

    with rt.db.session() as s:
        return admin.add_client(s, rt.now(), name, secret).id


def add_factory(rt, name: str = "factory-1", secret: str = "factory-secret-1", workers: tuple[str, ...] = (WRITER,)) -> int:  # type: ignore[no-untyped-def]
    from app.domain.matching import WorkerSpec
    from app.services import admin

    with rt.db.session() as s:
        return admin.add_factory(s, rt.now(), name, secret, [WorkerSpec.parse(w) for w in workers]).id


def submit_job(  # type: ignore[no-untyped-def]
    rt,
    client_id: int,
    data: bytes = b"PK fake odt bytes",
    *,
    filename: str = "doc.odt",
    application: str = "LibreOffice Writer",
    version: str = "7.4",
    fmt: str = "pdf",
    page_start: int = 1,
    page_end: int = 0,
    success_url: str | None = None,
    failure_url: str | None = None,
):
    from app.services import submission

    with rt.db.session() as s:
        content = submission.upload(s, rt.now(), client_id=client_id, filename=filename, parts=data, max_bytes=rt.settings.max_document_bytes)
        job = submission.enqueue(
            s, rt.now(), rt.mirror, client_id=client_id, content=content, application=application, version=version,
            fmt=fmt, page_start=page_start, page_end=page_end, max_attempts=rt.settings.max_attempts,
            success_url=success_url, failure_url=failure_url,
        )
        return job.id, job.guid
