"""app.web.bodies without a server: a fake RSGI protocol feeds bodies and records the answer.

What is checked: the app runs with the whole body as wsgi.input (in memory when small, a temporary
file on disk when large), a body that does not arrive by the deadline gets 408 and one log line
with no app call, a body cut short gets 400, a body declared over the limit is not read and the
connection is not reused, and a streamed answer is sent piece by piece and closed.
"""

from __future__ import annotations

import asyncio
import io
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.web.bodies import TIMED_OUT, BufferedBodies


class Scope:
    proto = "http"
    http_version = "1.1"
    server = "127.0.0.1:8080"
    client = "10.1.2.3:5555"
    scheme = "http"
    path = "/soap"
    query_string = "a=1"

    def __init__(self, method: str, headers: dict[str, str]) -> None:
        self.method = method
        self._headers = headers

    @property
    def headers(self) -> Any:
        outer = self

        class H:
            def items(self) -> list[tuple[str, str]]:
                return list(outer._headers.items())

        return H()


class Transport:
    def __init__(self, proto: Proto) -> None:
        self.proto = proto

    async def send_bytes(self, data: bytes) -> None:
        self.proto.sent.append(data)


class Proto:
    """Feeds `pieces` (then ends, or hangs, or fails) and records the response."""

    def __init__(self, pieces: list[bytes], *, then: str = "end") -> None:
        self.pieces, self.then = pieces, then
        self.status: int | None = None
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.sent: list[bytes] = []
        self.read = 0

    async def _more(self) -> AsyncIterator[bytes]:
        for p in self.pieces:
            self.read += len(p)
            yield p
        if self.then == "hang":
            await asyncio.sleep(3600)
        if self.then == "fail":
            raise OSError("connection reset")

    async def __call__(self) -> bytes:
        return b"".join([p async for p in self._more()])

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._more()

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def response_stream(self, status: int, headers: list[tuple[str, str]]) -> Transport:
        self.status, self.headers = status, headers
        return Transport(self)


class Recorder:
    """A WSGI app that records what it was given."""

    def __init__(self, answer: Any = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answer = answer
        self.closed = False

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        inp = environ["wsgi.input"]
        self.calls.append({"environ": dict(environ), "body": inp.read(), "input": inp,
                           "rolled": getattr(inp, "_rolled", None), "thread": threading.current_thread().name})
        start_response("200 OK", [("Content-Type", "text/plain")])
        if self.answer is not None:
            return self.answer
        return [b"ok"]


def serve(app: Any, method: str, headers: dict[str, str], proto: Proto, **kw: Any) -> BufferedBodies:
    bb = BufferedBodies(app, threads=2, body_timeout=kw.pop("timeout", 5), max_body=kw.pop("max_body", 1 << 20),
                        spool_over=kw.pop("spool_over", 1024))

    async def main() -> None:
        bb.__rsgi_init__(asyncio.get_running_loop())
        await bb.__rsgi__(Scope(method, headers), proto)

    try:
        asyncio.run(main())
    finally:
        bb.pool.shutdown(wait=True)
    return bb


def test_small_body_whole_in_memory_and_environ_as_granian_gives_it():
    app, proto = Recorder(), Proto([b"<a>", b"bc</a>"])
    serve(app, "POST", {"content-length": "9", "content-type": "text/xml", "x-forwarded-for": "1.1.1.1",
                        "authorization": "Basic eDp5"}, proto)
    (call,) = app.calls
    assert call["body"] == b"<a>bc</a>" and isinstance(call["input"], io.BytesIO)
    env = call["environ"]
    assert env["CONTENT_LENGTH"] == "9" and env["CONTENT_TYPE"] == "text/xml"
    assert env["HTTP_X_FORWARDED_FOR"] == "1.1.1.1" and env["HTTP_AUTHORIZATION"] == "Basic eDp5"
    assert env["REMOTE_ADDR"] == "10.1.2.3" and env["SERVER_PORT"] == "8080" and env["PATH_INFO"] == "/soap"
    assert env["QUERY_STRING"] == "a=1" and env["REQUEST_METHOD"] == "POST" and env["wsgi.url_scheme"] == "http"
    assert call["thread"].startswith("convhub-web")  # the app runs in the pool, not on the loop
    assert proto.status == 200 and proto.body == b"ok"


def test_large_body_spooled_to_a_file_not_kept_in_memory():
    pieces = [bytes([i]) * 1000 for i in range(5)]
    app, proto = Recorder(), Proto(pieces)
    serve(app, "POST", {"content-length": "5000"}, proto, spool_over=1024)
    (call,) = app.calls
    assert call["body"] == b"".join(pieces)
    assert call["rolled"] is True  # past spool_over the body went to a temporary file


def test_chunked_body_without_length_is_read_whole():
    app, proto = Recorder(), Proto([b"ab", b"cd"])
    serve(app, "POST", {"transfer-encoding": "chunked"}, proto)
    assert app.calls[0]["body"] == b"abcd"


def test_body_not_there_by_the_deadline_is_408_with_one_line_and_no_app_call(caplog):
    app, proto = Recorder(), Proto([b"<"], then="hang")
    with caplog.at_level(logging.WARNING, logger="convhub.web"):
        serve(app, "POST", {"content-length": "100000"}, proto, timeout=0.2)
    assert app.calls == []
    assert proto.status == 408 and proto.body == TIMED_OUT
    assert ("Connection", "close") in proto.headers
    lines = [r for r in caplog.records if r.name == "convhub.web"]
    assert len(lines) == 1 and "not received in time" in lines[0].getMessage() and not lines[0].exc_info


@pytest.mark.parametrize(("headers", "pieces", "then"), [
    ({"content-length": "10"}, [b"abc"], "end"),  # fewer bytes than declared
    ({"content-length": "5000"}, [b"a" * 2000], "fail"),  # connection reset while spooling
])
def test_body_cut_short_is_400_and_no_app_call(headers, pieces, then):
    app, proto = Recorder(), Proto(pieces, then=then)
    serve(app, "POST", headers, proto)
    assert app.calls == [] and proto.status == 400 and b"ended early" in proto.body


def test_body_declared_over_the_limit_is_not_read_and_the_connection_not_reused():
    app, proto = Recorder(), Proto([b"x" * 4096])
    serve(app, "POST", {"content-length": str(10 << 20)}, proto, max_body=1 << 20)
    (call,) = app.calls  # the app refuses it by its Content-Length, as it does without this adapter
    assert call["body"] == b"" and call["environ"]["CONTENT_LENGTH"] == str(10 << 20)
    assert proto.read == 0 and ("Connection", "close") in proto.headers


def test_chunked_body_over_the_limit_stops_there_and_the_connection_is_not_reused():
    app, proto = Recorder(), Proto([b"x" * 600] * 10)
    serve(app, "POST", {"transfer-encoding": "chunked"}, proto, max_body=1000)
    assert 1000 < len(app.calls[0]["body"]) < 6000  # enough for the app to see it is over the limit
    assert ("Connection", "close") in proto.headers


def test_no_body_on_get():
    app, proto = Recorder(), Proto([])
    serve(app, "GET", {}, proto)
    assert app.calls[0]["body"] == b"" and proto.status == 200


class _Stream:
    def __init__(self) -> None:
        self.closed = False

    def __iter__(self):  # type: ignore[no-untyped-def]
        yield b"one"
        yield b""
        yield b"two"

    def close(self) -> None:
        self.closed = True


def test_streamed_answer_sent_piece_by_piece_and_closed():
    stream = _Stream()
    app, proto = Recorder(stream), Proto([])
    serve(app, "GET", {}, proto)
    assert proto.status == 200 and proto.sent == [b"one", b"two"] and stream.closed
