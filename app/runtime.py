"""The composition root: settings -> database, Celery app, mirror, notifier, authenticator, clock.

Nothing here runs at import; `build_runtime(settings)` wires the adapters, and the web app, the
Celery tasks and the CLI all take a Runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from app.config import Settings
from app.db.engine import Database
from app.domain.leases import LeasePolicy
from app.services.auth import Authenticator
from app.services.ports import Mirror, Notifier, NullMirror, NullNotifier

if TYPE_CHECKING:
    from celery import Celery


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    mirror: Mirror
    notifier: Notifier
    auth: Authenticator
    policy: LeasePolicy
    clock: Callable[[], datetime] = utcnow
    celery: Celery | None = None
    extras: dict[str, object] = field(default_factory=dict)

    def now(self) -> datetime:
        return self.clock()

    def close(self) -> None:
        self.db.dispose()


class CeleryNotifier:
    def __init__(self, celery: Celery) -> None:
        self.celery = celery

    def send_callback(self, callback_id: int) -> None:
        self.celery.send_task("convhub.send_callback", args=[callback_id], queue="convhub", retry=False)


def build_runtime(
    settings: Settings, *, clock: Callable[[], datetime] = utcnow, broker: bool = True, celery: Celery | None = None
) -> Runtime:
    db = Database(settings.database_url)
    policy = LeasePolicy(settings.lease_seconds, settings.max_lease_total_seconds, settings.max_attempts)
    mirror: Mirror = NullMirror()
    notifier: Notifier = NullNotifier()
    if broker:
        from tasks.celery_app import make_celery
        from tasks.mirror import KombuMirror

        celery = celery or make_celery(settings)
        mirror = KombuMirror(celery)
        notifier = CeleryNotifier(celery)
    return Runtime(
        settings=settings,
        db=db,
        mirror=mirror,
        notifier=notifier,
        auth=Authenticator(settings.auth_cache_seconds),
        policy=policy,
        clock=clock,
        celery=celery,
    )
