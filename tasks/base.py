"""The Celery app carries its Runtime; every convhub task reads it from there (`self.runtime`).

No module global: two Celery apps in one process (tests, a push factory beside a server) each
have their own runtime. The composition root attaches it (`app.runtime.build_runtime`, or lazily
for worker processes through `build_worker_app`); tests attach theirs the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from celery import Celery, Task

from app.services.runtime import Runtime

_ATTR = "convhub_runtime"
_lock = threading.RLock()  # re-entered: a runtime factory attaches what it builds


def attach_runtime(app: Celery, runtime: Runtime | Callable[[], Runtime] | None) -> None:
    """Give `app` its runtime, or a function that builds it on first use; None detaches it."""
    with _lock:
        setattr(app, _ATTR, runtime)


def runtime_of(app: Celery) -> Runtime:
    """The app's runtime (built on first use when a factory was attached)."""
    with _lock:
        found = getattr(app, _ATTR, None)
        if found is None:
            raise RuntimeError("this Celery app carries no convhub runtime (see app.runtime.build_runtime)")
        if not isinstance(found, Runtime):
            found = found()
            setattr(app, _ATTR, found)
        return found


class RuntimeTask(Task):
    """Base class of the convhub tasks: `self.runtime` is the runtime of the app the task is bound to."""

    abstract = True

    @property
    def runtime(self) -> Runtime:
        return runtime_of(self.app)
