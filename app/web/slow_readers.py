"""Slow readers hold no more than their share of the app's threads (issue 15, point 5).

granian writes a response handed over whole (a list of bytes) from its Rust side, with no Python
thread; a response handed over as an iterator is pulled by the thread that ran the request, which
waits whenever the client stops reading. So a few hundred clients reading a large answer one byte
per second would hold every thread, and factories could no longer poll. This middleware:

- hands over whole every response of at most `buffer_up_to` bytes (almost all: polls without a
  document, statuses, faults, the WSDL); its thread is free at once;
- lets larger responses stream (a 100 MiB result is never held in memory whole), but at most
  `streams` of them at a time per process. Past that, a SOAP client or an operator gets a 503 with
  Retry-After and one line instead of the answer (large answers are all reads: results, lists);
- never refuses the XML-RPC endpoint: a factory's poll has already leased the job it answers with,
  and factories are the operator's own machines.

Behind the compose file's nginx (which reads upstream responses at once into its buffers) the
streams end quickly; the guard matters where clients reach the server directly (`convhub serve`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from typing import Any

BUSY = b"busy: too many large downloads in progress; retry later\n"


class _Released:
    """A response iterable that gives its stream slot back when the server closes it."""

    def __init__(self, body: Iterable[bytes], slots: threading.Semaphore, inner: Iterable[bytes]) -> None:
        self._iter = iter(body)
        self._slots, self._inner, self._done = slots, inner, False

    def __iter__(self) -> Iterator[bytes]:
        return self._iter

    def close(self) -> None:
        try:
            _close(self._inner)
        finally:
            if not self._done:
                self._done = True
                self._slots.release()


def _close(body: Iterable[bytes]) -> None:
    close = getattr(body, "close", None)
    if close is not None:
        close()


class SlowReaderGuard:
    def __init__(self, app: Callable[..., Any], *, streams: int, buffer_up_to: int = 512 * 1024,
                 never_refused: tuple[str, ...] = ("/xmlrpc",)) -> None:
        self.app = app
        self.streams = max(1, streams)
        self.slots = threading.Semaphore(self.streams)
        self.buffer_up_to = buffer_up_to
        self.never_refused = never_refused

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        seen: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            seen.update(status=status, headers=headers, exc_info=exc_info)
            return _no_write

        body = self.app(environ, capture)
        if isinstance(body, list | tuple):
            start_response(seen["status"], seen["headers"], seen["exc_info"])
            return body
        head: list[bytes] = []
        it = iter(body)
        if _declared_length(seen["headers"]) <= self.buffer_up_to:
            # Read up to the limit (and one more piece): a short answer is handed over whole.
            size = 0
            try:
                for piece in it:
                    head.append(piece)
                    size += len(piece)
                    if size > self.buffer_up_to:
                        break
                else:
                    start_response(seen["status"], seen["headers"], seen["exc_info"])
                    return [b"".join(head)]
            except BaseException:
                _close(body)
                raise
        # else: a long answer by its Content-Length, decided before any of it is produced
        if environ.get("PATH_INFO", "") in self.never_refused:
            start_response(seen["status"], seen["headers"], seen["exc_info"])
            return _Passthrough(chain(head, it), body)
        if not self.slots.acquire(blocking=False):
            _close(body)
            start_response("503 Service Unavailable", [
                ("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(BUSY))),
                ("Retry-After", "5"), ("Connection", "close"),
            ])
            return [BUSY]
        start_response(seen["status"], seen["headers"], seen["exc_info"])
        return _Released(chain(head, it), self.slots, body)


class _Passthrough:
    def __init__(self, body: Iterable[bytes], inner: Iterable[bytes]) -> None:
        self._iter = iter(body)
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        return self._iter

    def close(self) -> None:
        _close(self._inner)


def _declared_length(headers: list[tuple[str, str]]) -> int:
    """The response's Content-Length, or 0 when it has none (then its length is found by reading)."""
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value) if value.strip().isdigit() else 0
    return 0


def _no_write(data: bytes) -> None:
    raise RuntimeError("the write() callable of start_response is not supported")
