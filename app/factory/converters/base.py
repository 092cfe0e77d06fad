"""The converter interface every backend implements, and how a worker is shown to a person."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from app.domain.matching import DOCTYPES, FORMATS, WorkerSpec

DEFAULT_FORMAT = "pdf"  # what "the factory decides" when a job's format is empty
DEFAULT_TIMEOUT = 120.0


def worker_spec(application: str, version: str, doctypes: Iterable[str], formats: Iterable[str]) -> WorkerSpec:
    """A domain WorkerSpec from any iterables of doctypes and formats."""
    return WorkerSpec(application, version, frozenset(doctypes), frozenset(formats))


def worker_dict(worker: WorkerSpec) -> dict[str, Any]:
    """A worker as JSON-ready data (``convhub factory workers``); doctypes and formats in the
    domain's order (``DOCTYPES``, ``FORMATS``: odt, ods, odp; pdf, png, odf)."""
    return {
        "application": worker.application,
        "version": worker.version,
        "doctypes": [d for d in DOCTYPES if d in worker.doctypes],
        "formats": [f for f in FORMATS if f in worker.formats],
    }


class Converter:
    """Interface of every backend."""

    def workers(self) -> list[WorkerSpec]:
        raise NotImplementedError

    def convert(
        self,
        job: Mapping[str, Any],
        deadline_seconds: float | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, bytes]:
        """Convert one job; returns (format, data). ``cancel`` set from another thread abandons it."""
        raise NotImplementedError

    def start(self) -> None:
        """Warm up (start renderers) before the first job; optional."""

    def close(self) -> None:
        """Release processes and temporary files."""

    def __enter__(self) -> Converter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DEFAULT_FORMAT", "DEFAULT_TIMEOUT", "DOCTYPES", "FORMATS", "Converter", "WorkerSpec", "worker_dict", "worker_spec"]
