"""The Celery app carries its Runtime; every convhub task reads it from there (`self.runtime`).

No module global: two Celery apps in one process (tests, a push factory beside a server) each
have their own runtime. The composition root attaches it (`app.runtime.build_runtime`, or lazily
for worker processes through `build_worker_app`); tests attach theirs the same way.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery, Task

from app.db.engine import is_outage
from app.services.runtime import Runtime

log = logging.getLogger("convhub.tasks")

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


def skip_when_unavailable(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For beat's periodic tasks: while the database or the broker is away, a run is skipped with one
    warning line instead of a task failure and its traceback per run; the database is the truth and
    the next run catches up. Any other error still fails the task."""

    @functools.wraps(fn)
    def run(task: Task, *args: Any) -> Any:
        try:
            return fn(task, *args)
        except Exception as exc:
            broker = task.app.connection_for_write()  # not connected: only its error classes are read
            if not (is_outage(exc) or isinstance(exc, (*broker.connection_errors, *broker.channel_errors))):
                raise
            cause = exc.__cause__ or exc
            log.warning("%s skipped: database or broker unavailable (%s)", task.name, cause.__class__.__name__)
            return None

    return run
