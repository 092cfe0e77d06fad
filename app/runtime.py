"""The composition root: settings -> database, Celery app, mirror, notifier, authenticator, clock.

Nothing here runs at import; `build_runtime(settings)` wires the adapters, and the web app, the
Celery tasks and the CLI all take the Runtime it returns. This is the one module that imports both
the services and the Celery adapters in tasks/ (import-linter exempts it by name, see pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from app.config import Settings
from app.db.engine import Database
from app.domain.leases import LeasePolicy
from app.domain.throttle import FailureThrottle, ThrottlePolicy
from app.services.auth import Authenticator
from app.services.ports import Mirror, Notifier, NullMirror, NullNotifier
from app.services.runtime import Runtime, utcnow
from tasks.base import attach_runtime
from tasks.celery_app import CeleryNotifier, make_celery, prepare_embedded_broker
from tasks.mirror import KombuMirror

if TYPE_CHECKING:
    from celery import Celery

__all__ = ["Runtime", "build_runtime", "build_worker_app", "utcnow"]


def build_runtime(
    settings: Settings, *, clock: Callable[[], datetime] = utcnow, broker: bool = True, celery: Celery | None = None,
    maintenance: bool = False,
) -> Runtime:
    """Wire the adapters. With a broker, the Celery app (given or built) carries this runtime:
    its tasks run the services with it (`tasks.base.RuntimeTask`). `maintenance`: the Celery
    worker's (and the CLI's) runtime, whose statements get the maintenance statement timeout."""
    timeout = settings.maintenance_statement_timeout_seconds if maintenance else settings.statement_timeout_seconds
    db = Database(settings.database_url, statement_timeout=timeout)
    policy = LeasePolicy(settings.lease_seconds, settings.max_lease_total_seconds, settings.max_attempts)
    mirror: Mirror = NullMirror()
    notifier: Notifier = NullNotifier()
    if broker:
        prepare_embedded_broker(settings)
        celery = celery or make_celery(settings)
        mirror = KombuMirror(celery)
        notifier = CeleryNotifier(celery)
    rt = Runtime(
        settings=settings,
        db=db,
        mirror=mirror,
        notifier=notifier,
        auth=Authenticator(settings.auth_cache_seconds, throttle=FailureThrottle(throttle_policy(settings))),
        policy=policy,
        clock=clock,
        celery=celery,
    )
    if celery is not None:
        attach_runtime(celery, rt)
    return rt


def throttle_policy(settings: Settings) -> ThrottlePolicy:
    return ThrottlePolicy(
        per_name=settings.auth_throttle_per_name,
        per_address=settings.auth_throttle_per_address,
        window_seconds=float(settings.auth_throttle_window_seconds),
        max_entries=settings.auth_throttle_max_entries,
    )


def build_worker_app(settings: Settings) -> Celery:
    """The Celery app of `convhub worker` / `convhub beat`. Its runtime is built on the first task a
    process runs (after the pool forked), never before: no connection crosses a fork."""
    app = make_celery(settings)
    attach_runtime(app, lambda: build_runtime(settings, celery=app, maintenance=True))
    return app
