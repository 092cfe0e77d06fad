"""Slow clients cannot stop factories from polling (issue 15, point 5).

`convhub web` and the all-in-one `convhub serve --factory off` are started as subprocesses. Then,
all at once:
- connections that send their request head one byte per second (reconnecting when the server
  closes them, as an attacker would);
- connections that send a whole head, then a SOAP body one byte per second (the SOAP endpoint reads
  the body before it can check credentials; XML-RPC checks the Authorization header first);
- connections that ask for a large SOAP result and read the answer one byte per second;
- 8 factory threads polling with the reference factory's XML-RPC proxy (one kept-alive connection
  each).
Asserted: every poll is answered (no fault, no timeout at the client's timeout), and every poller
completes polls in each third of the window, i.e. keeps making progress while the slow connections
are open. No rate is asserted.

Short form (make test): 50 + 50 + 50 slow connections for 10 s. Full form (CONVHUB_SOAK=1, `make
soak`): 200 + 200 + 200 for 60 s. Before app.web.bodies (granian's WSGI interface, where a thread waits
for the body) 50 slow bodies stopped every poll; now a body is read whole with no thread.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import threading
import time
import xmlrpc.client
from pathlib import Path

import pytest

from app.factory.xmlrpc_client import make_proxy
from protocol.soap import NS, PATH
from tests.conftest import free_port, wait_for
from tests.e2e.test_serve import CONVHUB, _cli, _env, _get

SOAK = os.environ.get("CONVHUB_SOAK") == "1"
SLOW_HEADS, SLOW_BODIES, SLOW_READERS, SECONDS = (200, 200, 200, 60.0) if SOAK else (50, 50, 50, 10.0)
POLLERS = 8
POLL_TIMEOUT = 10.0
RESULT_BYTES = 8 * 1024 * 1024  # well over what the kernel's socket buffers hold for one connection
FACTORY, SECRET = "f1", "factory-secret-slow"
CLIENT, CLIENT_SECRET = "petshow", "Wf-long-enough-secret"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"


def _result_request(host: str, job_id: str) -> bytes:
    body = (
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><ns2:getContentConvertResultRequest xmlns:ns2="{NS}">'
        f"<clientApplicationId>{CLIENT}</clientApplicationId><clientApplicationCredentials>{CLIENT_SECRET}"
        f"</clientApplicationCredentials><jobId>{job_id}</jobId></ns2:getContentConvertResultRequest></soap:Body></soap:Envelope>"
    ).encode()
    head = (f"POST {PATH} HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/xml; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


class SlowCrowd(threading.Thread):
    """One thread driving every slow connection, one byte each per tick (a second)."""

    def __init__(self, port: int, job_id: str) -> None:
        super().__init__(daemon=True)
        self.port, self.stop = port, threading.Event()
        self.result_request = _result_request(f"127.0.0.1:{port}", job_id)
        self.heads: list[socket.socket | None] = [None] * SLOW_HEADS
        self.bodies: list[socket.socket | None] = [None] * SLOW_BODIES
        self.readers: list[socket.socket | None] = [None] * SLOW_READERS
        self.read_bytes = 0
        self.answered: set[int] = set()  # readers whose current request has started to be answered
        self.reconnects = 0
        self.open_samples: list[int] = []

    def _connect(self, small_rcvbuf: bool = False) -> socket.socket | None:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if small_rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", self.port))
        except OSError:
            s.close()
            return None
        return s

    def _open(self, kind: str) -> socket.socket | None:
        s = self._connect(small_rcvbuf=kind == "reader")
        if s is not None:
            first = {"head": b"POST /xmlrpc HTTP/1.1\r\nHost: x\r\nX-Slow: ",
                     "body": (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\n"
                              "Content-Length: 100000\r\n\r\n<").encode(),
                     "reader": self.result_request}[kind]
            with contextlib.suppress(OSError):
                s.sendall(first)
        return s

    def _step(self, kind: str, s: socket.socket) -> bool:
        """One byte sent or read; False when the server has closed the connection."""
        try:
            if kind != "reader":
                s.send(b"a")
                return True
            got = s.recv(1, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return True
        except OSError:
            return False
        self.read_bytes += len(got)
        return bool(got)

    def _tick(self) -> None:
        for kind, group in (("head", self.heads), ("body", self.bodies), ("reader", self.readers)):
            for i, s in enumerate(group):
                before = self.read_bytes
                if s is not None and not self._step(kind, s):
                    s.close()
                    s = None
                    self.reconnects += 1
                    self.answered.discard(i)
                elif s is not None and kind == "reader" and self.read_bytes > before:
                    self.answered.add(i)
                if s is None:  # reconnect at once, as an attacker keeping N connections would
                    group[i] = self._open(kind)

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            self._tick()
            self.open_samples.append(sum(s is not None for s in self.heads + self.bodies + self.readers))
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))
        for s in self.heads + self.bodies + self.readers:
            if s is not None:
                s.close()


def _poller(url: str, stop: threading.Event, ready: threading.Barrier, done: list[float], errors: list[str]) -> None:
    proxy = make_proxy(url, FACTORY, SECRET, timeout=POLL_TIMEOUT)
    try:  # connected, and the credential cached, before the window starts (as a running factory)
        proxy.jobs.poll(FACTORY)
    except (OSError, xmlrpc.client.Error) as exc:
        errors.append(f"first poll: {type(exc).__name__}: {exc}")
    ready.wait()
    while not stop.is_set():
        try:
            proxy.jobs.poll(FACTORY)
            done.append(time.monotonic())
        except (OSError, xmlrpc.client.Error) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            proxy = make_proxy(url, FACTORY, SECRET, timeout=POLL_TIMEOUT)


def _seed_result(env: dict[str, str], base: str, tmp: Path) -> str:
    """A COMPLETE job of CLIENT whose result is RESULT_BYTES: submitted by the CLI, finished over XML-RPC."""
    doc = tmp / "doc.odt"
    doc.write_bytes(b"PK\x03\x04 slow clients")
    out = _cli(env, "jobs", "submit", str(doc), "--client", CLIENT, "--application", "LibreOffice Writer",
               "--version", "7.4", "--format", "pdf")
    job_id = out.split()[1]
    proxy = make_proxy(base, FACTORY, SECRET, timeout=60)
    job = wait_for(lambda: proxy.jobs.poll(FACTORY) or None, 30, "the job")
    proxy.jobs.finish(FACTORY, job["job"], "pdf", xmlrpc.client.Binary(os.urandom(RESULT_BYTES)), job["lease"])
    info = _cli(env, "jobs", "show", job_id)
    assert '"COMPLETE"' in info
    return job_id


@pytest.mark.timeout(600 if SOAK else 150)
@pytest.mark.parametrize("command", ["web", "serve"])
def test_slow_clients_do_not_stop_pollers(tmp_path, command):
    if command == "serve" and not SOAK:  # the same web server under `convhub serve`: make soak only, to keep make test short
        pytest.skip("full form only (CONVHUB_SOAK=1, make soak)")
    env = _env(tmp_path / "var")
    env.pop("CONVHUB_AUTH_CACHE_SECONDS")  # the default cache, as in production
    _cli(env, "db", "upgrade")
    _cli(env, "clients", "add", CLIENT, "--secret", CLIENT_SECRET)
    _cli(env, "factories", "add", FACTORY, "--secret", SECRET, "--worker", "LibreOffice Writer|7.4|odt|pdf,png,odf")
    port = free_port()
    argv = CONVHUB + (["web", "--port", str(port)] if command == "web" else ["serve", "--port", str(port), "--factory", "off"])
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    crowd = None
    stop = threading.Event()
    try:
        wait_for(lambda: _get(base + "/healthz")[0] == 200, 90, "healthz")
        job_id = _seed_result(env, base, tmp_path)

        crowd = SlowCrowd(port, job_id)
        crowd.start()
        # The crowd is connected and every slow reader's request has been answered (a large result
        # streaming, or a 503 once the streams are taken) before the pollers start.
        wait_for(lambda: len(crowd.answered) == SLOW_READERS or None, 60, "answers to the slow readers")
        done: list[list[float]] = [[] for _ in range(POLLERS)]
        errors: list[str] = []
        ready = threading.Barrier(POLLERS + 1, timeout=3 * POLL_TIMEOUT)
        threads = [threading.Thread(target=_poller, args=(base, stop, ready, done[i], errors), daemon=True) for i in range(POLLERS)]
        for t in threads:
            t.start()
        ready.wait()
        started = time.monotonic()
        time.sleep(SECONDS)
        stop.set()
        for t in threads:
            t.join(POLL_TIMEOUT + 5)
        crowd.stop.set()
        crowd.join(10)

        assert not errors, errors[:5]
        thirds = [(started + SECONDS * k / 3, started + SECONDS * (k + 1) / 3) for k in range(3)]
        for i, stamps in enumerate(done):
            for lo, hi in thirds:
                assert any(lo <= t < hi for t in stamps), f"poller {i} made no progress in [{lo - started:.0f}, {hi - started:.0f}) s"
        # The crowd really was there: most slow connections open throughout, readers were answered.
        total = SLOW_HEADS + SLOW_BODIES + SLOW_READERS
        assert min(crowd.open_samples[3:]) >= 0.8 * total, crowd.open_samples
        assert crowd.read_bytes > 0
        assert proc.poll() is None
    finally:
        stop.set()
        if crowd is not None:
            crowd.stop.set()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    text = (tmp_path / "server.log").read_text(errors="replace")
    assert not re.search(r"Traceback", text), text[-3000:]
    print(f"{command}: polls per poller {[len(d) for d in done]}, slow reconnects {crowd.reconnects}, "
          f"bytes read slowly {crowd.read_bytes}", flush=True)
