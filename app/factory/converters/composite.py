"""Several backends behind one converter, routed by a job's (application, version)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigError, ConversionError
from .base import Converter, WorkerSpec


class CompositeConverter(Converter):
    """Routes each job to the backend serving its (application, version)."""

    def __init__(self, backends: Sequence[Converter]):
        self.backends = list(backends)
        self._routes: dict[tuple[str, str], Converter] = {}
        for backend in self.backends:
            for w in backend.workers():
                key = (w.application, w.version)
                if key in self._routes:
                    raise ConfigError(f"two backends serve {w.application} {w.version}")
                self._routes[key] = backend

    def workers(self) -> list[WorkerSpec]:
        return [w for b in self.backends for w in b.workers()]

    def backend_for(self, job: Mapping[str, Any]) -> Converter:
        key = (str(job.get("application") or ""), str(job.get("version") or ""))
        try:
            return self._routes[key]
        except KeyError:
            raise ConversionError(f"this factory has no worker for {key[0]} {key[1]}".strip()) from None

    def convert(
        self,
        job: Mapping[str, Any],
        deadline_seconds: float | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, bytes]:
        return self.backend_for(job).convert(job, deadline_seconds, cancel)

    def start(self) -> None:
        for b in self.backends:
            b.start()

    def close(self) -> None:
        for b in self.backends:
            b.close()
