"""`convhub flower`: Flower on our broker, showing every per-pair queue.

Two Flower behaviours shape this (see docs/operations.md, "Flower"):
- Its broker view lists only the queues that known workers consume, once it has seen any worker.
  The server's `convhub worker` consumes only `convhub` (it must not take the per-pair messages:
  those mirror jobs that pull factories claim from the database). So the queue list Flower asks
  the broker about is widened here to: the workers' queues + our configured queues + every
  (application, version) pair known to the database (factories' workers and QUEUED jobs),
  re-read at most every QUEUE_REFRESH seconds so factories added later appear without a restart.
- On RabbitMQ, lengths come from the management API (`rabbitmq_management` plugin, port 15672),
  which knows only declared queues; the per-pair queues are declared at start-up.
On kombu's SQLAlchemy broker Flower shows no queues at all ("'sql' broker is not supported").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from urllib.parse import quote, unquote, urlsplit

from app.config import ConfigError, Settings

log = logging.getLogger("convhub.flower")

QUEUE_REFRESH = 30.0
MANAGEMENT_PORT = 15672
MANAGEMENT_TLS_PORT = 15671


def broker_api_url(settings: Settings) -> str | None:
    """RabbitMQ management API URL for Flower, with the broker's own credentials and host."""
    if settings.broker_kind != "amqp":
        return None
    u = urlsplit(settings.broker_url)
    tls = u.scheme == "amqps"
    user = quote(unquote(u.username or "guest"), safe="")
    password = quote(unquote(u.password or "guest"), safe="")
    host = u.hostname or "localhost"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = MANAGEMENT_TLS_PORT if tls else MANAGEMENT_PORT
    return f"{'https' if tls else 'http'}://{user}:{password}@{host}:{port}/api/"


def flower_argv(settings: Settings, *, port: int | None = None, address: str = "127.0.0.1") -> list[str]:
    argv = ["flower", f"--port={port or settings.flower_port}", f"--address={address}"]
    if settings.operator_password:
        argv.append(f"--basic-auth={settings.operator_user}:{settings.operator_password}")
    api = broker_api_url(settings)
    if api:
        # Flower reads RabbitMQ queue lengths from the management API (rabbitmq_management plugin).
        argv.append(f"--broker-api={api}")
    return argv


def known_pairs(settings: Settings) -> list[tuple[str, str]]:
    """Every (application, version) a factory serves or a QUEUED job waits for."""
    from app.db.engine import Database
    from app.services.admin import served_pairs
    from app.services.maintenance import queued_by_pair

    db = Database(settings.database_url, pool_size=1)
    try:
        with db.read_session() as s:
            return sorted(served_pairs(s, include_disabled=True) | set(queued_by_pair(s)))
    finally:
        db.dispose()


class QueueNames:
    """Queue names from the database, cached for `ttl` seconds; the last good list on errors."""

    def __init__(self, load: Callable[[], list[tuple[str, str]]], ttl: float = QUEUE_REFRESH) -> None:
        self._load = load
        self._ttl = ttl
        self._names: set[str] = set()
        self._at = float("-inf")
        self._lock = threading.Lock()

    def __call__(self) -> set[str]:
        from app.domain.matching import queue_name

        with self._lock:
            if time.monotonic() - self._at >= self._ttl:
                try:
                    self._names = {queue_name(a, v) for a, v in self._load()}
                except Exception:  # keep showing the last known list
                    log.warning("flower: could not read the queue list from the database", exc_info=True)
                self._at = time.monotonic()
            return set(self._names)


def widen_queue_view(capp, extra: Callable[[], set[str]]) -> bool:  # type: ignore[no-untyped-def]
    """Make Flower ask the broker about workers' queues + configured queues + `extra()`.

    Patches flower.views.BaseHandler.get_active_queue_names (Flower 2.x); returns False, and
    leaves Flower as it is, if that hook is missing in the installed version.
    """
    try:
        from flower.views import BaseHandler
    except ImportError:
        return False
    original = getattr(BaseHandler, "get_active_queue_names", None)
    if original is None:
        log.warning("flower: get_active_queue_names not found; per-pair queues may be hidden")
        return False
    if getattr(original, "_convhub", False):
        return True

    def get_active_queue_names(self):  # type: ignore[no-untyped-def]
        names = set(original(self))
        names.add(capp.conf.task_default_queue)
        names.update(q.name for q in capp.conf.task_queues or [] if q.name)
        names.update(extra())
        return sorted(names)

    get_active_queue_names._convhub = True  # type: ignore[attr-defined]
    BaseHandler.get_active_queue_names = get_active_queue_names
    return True


def check_exposure(settings: Settings, address: str) -> None:
    """Flower shows task arguments and can revoke tasks: beyond loopback it needs credentials."""
    import ipaddress

    try:
        loopback = address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not settings.operator_password:
        raise ConfigError(
            f"refusing to serve Flower on {address} without credentials: set CONVHUB_OPERATOR_PASSWORD"
        )


def run_flower(settings: Settings, *, port: int | None = None, address: str = "127.0.0.1") -> int:
    from tasks.celery_app import make_celery, pair_queue
    from tasks.mirror import KombuMirror

    check_exposure(settings, address)

    capp = make_celery(settings)
    pairs: list[tuple[str, str]] = []
    try:
        pairs = known_pairs(settings)
    except Exception as exc:  # Flower is still useful without the database
        log.warning("flower: database unavailable, per-pair queues unknown (%s)", exc.__class__.__name__)
    if pairs:
        capp.conf.task_queues = list(capp.conf.task_queues) + [pair_queue(a, v) for a, v in pairs]
        try:
            # RabbitMQ's management API reports only declared queues.
            KombuMirror(capp).declare(pairs)
        except Exception as exc:
            log.warning("flower: could not declare the per-pair queues (%s)", exc.__class__.__name__)
    if settings.broker_kind == "sqla":
        log.warning("flower: the SQLAlchemy broker has no queue view in Flower; use /ops or /metrics")
    widen_queue_view(capp, QueueNames(lambda: known_pairs(settings)))
    capp.start(flower_argv(settings, port=port, address=address))
    return 0
