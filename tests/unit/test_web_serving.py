"""The serving layer's own pieces without a server: the granian command line of `convhub web`, the
slow-reader guard, and the reaping of dead processes' live-gauge files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from app.web.serving import web_argv
from app.web.slow_readers import BUSY, SlowReaderGuard


def test_cli_flags_map_to_granian_and_every_guard_is_on():
    argv = web_argv("0.0.0.0", 8080, workers=3, threads=5)
    assert argv[:3] == [sys.executable, "-m", "granian"]
    flags = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--")}
    # Bodies buffered (the default): the RSGI interface, the app's threads are app.web.bodies' own.
    assert flags["--interface"] == "rsgi" and "--factory" in argv and argv[-1] == "app.web.wsgi:make_app"
    assert flags["--host"] == "0.0.0.0" and flags["--port"] == "8080"
    assert flags["--workers"] == "3" and "--blocking-threads" not in flags
    assert flags["--http"] == "1"
    assert int(flags["--http1-header-read-timeout"]) <= 30_000
    assert "--respawn-failed-workers" in argv and "--workers-kill-timeout" in argv
    assert "--no-access-log" in argv and "--access-log" in web_argv("h", 1, workers=1, threads=1, access_log=True)
    direct = web_argv("0.0.0.0", 8080, workers=3, threads=5, buffer_bodies=False)
    flags = {a: direct[i + 1] for i, a in enumerate(direct[:-1]) if a.startswith("--")}
    assert flags["--interface"] == "wsgi" and flags["--blocking-threads"] == "5" and direct[-1] == argv[-1]


class _Stream:
    """An app body that records whether it was closed and how much was pulled."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces, self.pulled, self.closed = pieces, 0, False

    def __iter__(self):  # type: ignore[no-untyped-def]
        for p in self.pieces:
            self.pulled += 1
            yield p

    def close(self) -> None:
        self.closed = True


def _app(body: _Stream, length: int | None):  # type: ignore[no-untyped-def]
    def app(environ, start_response):  # type: ignore[no-untyped-def]
        headers = [("Content-Type", "text/xml")] + ([("Content-Length", str(length))] if length is not None else [])
        start_response("200 OK", headers)
        return body
    return app


def _call(guard: SlowReaderGuard, path: str = "/cds-controller/contentService"):  # type: ignore[no-untyped-def]
    seen: dict = {}
    out = guard({"PATH_INFO": path}, lambda status, headers, exc_info=None: seen.update(status=status, headers=headers))
    return seen["status"], out


def test_short_answers_are_handed_over_whole_and_closed():
    body = _Stream([b"<a>", b"b", b"</a>"])
    status, out = _call(SlowReaderGuard(_app(body, None), streams=1, buffer_up_to=100))
    assert status == "200 OK" and out == [b"<a>b</a>"]


def test_long_answers_stream_within_the_slots_then_get_503():
    bodies = [_Stream([b"x" * 10] * 5) for _ in range(3)]
    it = iter(bodies)
    guard = SlowReaderGuard(lambda e, sr: _app(next(it), 50)(e, sr), streams=2, buffer_up_to=20)
    first, second = _call(guard)[1], _call(guard)[1]
    assert not isinstance(first, list) and not isinstance(second, list)
    assert bodies[0].pulled == 0  # a long answer (by its Content-Length) is not read ahead
    status, out = _call(guard)
    assert status.startswith("503") and out == [BUSY] and bodies[2].closed and bodies[2].pulled == 0
    assert b"".join(first) == b"x" * 50
    first.close()  # the server closes a finished response: its slot is free again
    assert bodies[0].closed
    second.close()


def test_a_freed_slot_is_reused_and_xmlrpc_is_never_refused():
    made: list[_Stream] = []

    def app(environ, start_response):  # type: ignore[no-untyped-def]
        made.append(_Stream([b"y" * 30]))
        return _app(made[-1], 30)(environ, start_response)

    guard = SlowReaderGuard(app, streams=1, buffer_up_to=10)
    held = _call(guard)[1]
    assert _call(guard)[0].startswith("503")
    for _ in range(3):  # a factory's poll answer is never refused, whatever the slots
        status, out = _call(guard, "/xmlrpc")
        assert status == "200 OK" and b"".join(out) == b"y" * 30
    held.close()
    held.close()  # closing twice frees one slot only
    status, again = _call(guard)
    assert status == "200 OK"
    assert _call(guard)[0].startswith("503")
    again.close()


def test_unknown_length_answers_are_read_up_to_the_limit():
    short = _Stream([b"a"] * 5)
    assert _call(SlowReaderGuard(_app(short, None), streams=1, buffer_up_to=10))[1] == [b"aaaaa"]
    long = _Stream([b"a"] * 50)
    status, out = _call(SlowReaderGuard(_app(long, None), streams=1, buffer_up_to=10))
    assert status == "200 OK" and not isinstance(out, list) and long.pulled == 11
    assert b"".join(out) == b"a" * 50


def test_dead_processes_live_gauges_are_reaped_and_counters_kept(tmp_path: Path):
    code = (
        "import os\n"
        "from prometheus_client import Counter, Gauge\n"
        "Counter('c_total', 'c').inc()\n"
        "Gauge('g', 'g', multiprocess_mode='livesum').set(1)\n"
    )
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    assert list(tmp_path.glob("gauge_live*.db")) and list(tmp_path.glob("counter_*.db"))
    from app.web.metrics_view import reap_dead

    mine = tmp_path / f"gauge_livesum_{os.getpid()}.db"
    mine.write_bytes(b"")  # a live process's file stays
    assert len(reap_dead(str(tmp_path))) == 1
    assert [p.name for p in tmp_path.glob("gauge_live*.db")] == [mine.name]
    assert list(tmp_path.glob("counter_*.db"))  # a dead worker's counts still add up
