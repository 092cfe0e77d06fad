"""The Runtime: what the adapters hand to the services (database, mirror, notifier, authenticator,
lease policy, clock), wired by the composition root `app.runtime.build_runtime`.

Adapters (protocol/, app/web/, tasks/) take a Runtime; nothing here connects or builds anything.
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
from app.services.ports import Mirror, Notifier

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
