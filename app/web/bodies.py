"""Whole request bodies before a thread: the WSGI app served over granian's RSGI interface.

In granian's WSGI mode a request is handed to one of the worker's blocking threads as soon as its
head has arrived, and `wsgi.input` reads the body from that thread: a client that sends a full head
and then its body one byte per second holds a thread for as long as it likes, and a few dozen such
connections stop every factory's poll on an exposed server (issue 15). Here granian runs the worker's
asyncio loop (RSGI) and this adapter:

- reads each request body on the loop, with no thread, under a deadline (`body_timeout`): a body
  not whole by then is answered 408 with one line and the connection is closed;
- keeps a body of up to `spool_over` bytes in memory and spools a larger one (documents of up to
  the request limit) to a temporary file as it arrives, so a 100 MiB upload is never in RAM whole;
- does not read a body whose Content-Length is over `max_body` (the request limit): the app refuses
  it by its header (413, a fault or a status) and the connection is closed;
- then runs the WSGI app in a pool of `threads` threads with the whole body as `wsgi.input`;
- sends a response handed over whole at once, and pulls a streamed one piece by piece in the pool,
  so a client that reads slowly waits on the loop, not in a thread.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger("convhub.web")

TIMED_OUT = b"request body not received in time\n"
CUT_SHORT = b"request body ended early\n"
NO_SPACE = b"no space to receive the request body; retry later\n"
SPOOL_OVER = 1024 * 1024
_DONE = object()


class _Failed(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(body.decode().strip())
        self.status, self.body = status, body


class _StartResponse:
    __slots__ = ("status", "headers")

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[str, str]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        self.status = int(status.split(" ", 1)[0])
        self.headers = headers
        return _no_write


def _no_write(data: bytes) -> None:
    raise RuntimeError("the write() callable of start_response is not supported")


def _split_host(value: str, default_port: str) -> tuple[str, str]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        return value, default_port
    return host.strip("[]"), port


class BufferedBodies:
    """An RSGI application that serves `app` (WSGI); see the module's docstring."""

    def __init__(self, app: Callable[..., Any], *, threads: int, body_timeout: float, max_body: int,
                 spool_over: int = SPOOL_OVER) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="convhub-web")
        self.body_timeout = body_timeout
        self.max_body = max_body
        self.spool_over = spool_over
        self.loop: asyncio.AbstractEventLoop | None = None
        self.base = {
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SCRIPT_NAME": "",
            "SERVER_SOFTWARE": "granian",
            "wsgi.errors": sys.stderr,
            "wsgi.input_terminated": True,
            "wsgi.multiprocess": True,
            "wsgi.multithread": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }

    # granian's RSGI hooks ---------------------------------------------------------------------

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":
            return
        loop = self.loop or asyncio.get_running_loop()
        environ = self._environ(scope)
        length = environ.get("CONTENT_LENGTH", "")
        declared = int(length) if length.isdigit() else -1
        close = False
        if declared > self.max_body:
            body: Any = io.BytesIO()  # refused by its header: not read, and the connection not reused
            close = True
        elif declared == 0 or (declared < 0 and "HTTP_TRANSFER_ENCODING" not in environ):
            body = io.BytesIO()  # no body
        else:
            try:
                async with asyncio.timeout(self.body_timeout):
                    body, close = await self._read(proto, declared)
            except TimeoutError:
                self._refuse(proto, scope, 408, TIMED_OUT)
                return
            except _Failed as failed:
                self._refuse(proto, scope, failed.status, failed.body)
                return
        environ["wsgi.input"] = body
        try:
            status, headers, rv = await loop.run_in_executor(self.pool, self._call, environ)
        except BaseException:
            body.close()
            raise
        if close and not any(name.lower() == "connection" for name, _ in headers):
            headers = [*headers, ("Connection", "close")]
        if isinstance(rv, list):
            body.close()
            proto.response_bytes(status, headers, rv[0] if len(rv) == 1 else b"".join(rv))
            return
        try:
            await self._stream(loop, proto, status, headers, rv)
        finally:
            body.close()

    # the request ------------------------------------------------------------------------------

    def _environ(self, scope: Any) -> dict[str, Any]:
        environ = dict(self.base)
        server_name, server_port = _split_host(scope.server, "80")
        remote_addr, remote_port = _split_host(scope.client, "")
        path = scope.path
        environ.update({
            "REQUEST_METHOD": scope.method,
            "PATH_INFO": path.encode("utf-8", "surrogateescape").decode("latin-1"),
            "QUERY_STRING": scope.query_string,
            "SERVER_NAME": server_name,
            "SERVER_PORT": server_port,
            "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
            "REMOTE_ADDR": remote_addr,
            "REMOTE_PORT": remote_port,
            "wsgi.url_scheme": scope.scheme,
        })
        for name, value in scope.headers.items():
            key = name.upper().replace("-", "_")
            if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                key = "HTTP_" + key
            if key in environ and key.startswith("HTTP_"):
                environ[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
            else:
                environ[key] = value
        return environ

    async def _read(self, proto: Any, declared: int) -> tuple[Any, bool]:
        """The whole body (bytes in memory up to `spool_over`, else a temporary file), and whether
        it was left unread past the limit (a chunked body: then the connection is not reused)."""
        if 0 <= declared <= self.spool_over:
            try:
                data = await proto()
            except Exception as exc:
                raise _Failed(400, CUT_SHORT) from exc
            if declared and len(data) < declared:
                raise _Failed(400, CUT_SHORT)
            return io.BytesIO(data), False
        spool: Any = tempfile.SpooledTemporaryFile(max_size=self.spool_over)
        size, over = 0, False
        try:
            async for chunk in proto:
                size += len(chunk)
                try:
                    spool.write(chunk)
                except OSError as exc:  # the temporary directory's disk is full
                    raise _Failed(503, NO_SPACE) from exc
                if size > self.max_body:  # chunked and over the limit: what the app needs to refuse it
                    over = True
                    break
        except _Failed:
            spool.close()
            raise
        except Exception as exc:
            spool.close()
            raise _Failed(400, CUT_SHORT) from exc
        if 0 <= declared and size < declared:
            spool.close()
            raise _Failed(400, CUT_SHORT)
        spool.seek(0)
        return spool, over

    def _refuse(self, proto: Any, scope: Any, status: int, body: bytes) -> None:
        # (the path as repr: it is percent-decoded, so it may hold a line break)
        log.warning("%s %r from %s: %s", scope.method, scope.path[:200], scope.client, body.decode().strip())
        proto.response_bytes(status, [("Content-Type", "text/plain; charset=utf-8"),
                                      ("Content-Length", str(len(body))), ("Connection", "close")], body)

    # the app, in the pool ---------------------------------------------------------------------

    def _call(self, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], Iterable[bytes]]:
        start = _StartResponse()
        rv = self.app(environ, start)
        if isinstance(rv, list | tuple):
            return start.status, start.headers, list(rv)
        return start.status, start.headers, rv

    async def _stream(self, loop: asyncio.AbstractEventLoop, proto: Any, status: int,
                      headers: list[tuple[str, str]], rv: Iterable[bytes]) -> None:
        it: Iterator[bytes] = iter(rv)
        try:
            first = await loop.run_in_executor(self.pool, next, it, _DONE)
            transport = proto.response_stream(status, headers)
            piece = first
            while piece is not _DONE:
                if piece:
                    try:
                        await transport.send_bytes(piece)
                    except Exception:  # the client went away: nothing more to send
                        log.debug("response stream ended early: the client closed the connection")
                        return
                piece = await loop.run_in_executor(self.pool, next, it, _DONE)
        finally:
            close = getattr(rv, "close", None)
            if close is not None:
                await loop.run_in_executor(self.pool, close)
