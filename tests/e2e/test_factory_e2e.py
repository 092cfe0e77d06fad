"""The reference factory end to end with real processes, as a new user runs them.

One server for the module: `convhub db upgrade`, `clients add`, `factories add`, then `convhub web`
(granian, 1 worker), `convhub beat` and `convhub worker --pool threads` as subprocesses on the
embedded default (SQLite + kombu's SQLite broker in CONVHUB_DATA_DIR), with a 5 s lease and a 1 s
reclaim interval. Factories are `convhub factory run` / `convhub factory celery` subprocesses:

* real LibreOffice: an ODT made by soffice from flat XML becomes a PDF (pdfinfo), a PNG, an ODT;
* a hanging command worker (`sleep 600`, timeout 2 s) is killed at the timeout, its process
  group is gone, and the job is failed back to QUEUED with one attempt counted;
* `kill -9` of a factory mid-job: the lease expires, beat reclaims the job, a second (LibreOffice)
  factory completes it, and the first factory's late `jobs.finish` with its old lease token is
  refused with fault 409;
* the push-style factory (`convhub factory celery`) completes a job from its Celery queue.

Waiting is polling with deadlines; nothing asserts on a fixed sleep.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
import uuid
import xmlrpc.client
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import free_port, require, wait_for
from tests.factorykit import pdf_pages, png_size
from tests.integration.factory.conftest import flat_odt, libreoffice_missing

pytestmark = [pytest.mark.libreoffice, pytest.mark.slow]

_BIN = Path(sys.executable).with_name("convhub")
CONVHUB = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "app.cli"]
LEASE = 5
RECLAIM = 1
CLIENT, CLIENT_SECRET = "petshow", "petshow-secret-0123456789"
MARKER = f"convhub-e2e-{uuid.uuid4().hex[:12]}"  # in the env of every command a factory runs

HANG_INI = """
[factory]
timeout = 2
[libreoffice]
enabled = no
[command:hang]
application = Hang
version = 1
doctypes = odt
formats = pdf
command = sleep 600
timeout = 2
"""

# Claims to be LibreOffice Writer but only sleeps: the factory that is killed with SIGKILL mid-job.
STUCK_INI = """
[libreoffice]
enabled = no
[command:stuck]
application = LibreOffice Writer
version = {version}
doctypes = odt
formats = pdf, png, odf
command = sleep 120
timeout = 110
"""

COPY_INI = """
[libreoffice]
enabled = no
[command:copy]
application = Copy
version = 1
doctypes = odt
formats = odf
default_format = odf
command = cp {input} {output}
"""




class Server:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.data = tmp / "var"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVHUB_")}
        env.update(
            CONVHUB_DATA_DIR=str(self.data),
            CONVHUB_LEASE_SECONDS=str(LEASE),
            CONVHUB_RECLAIM_INTERVAL_SECONDS=str(RECLAIM),
            CONVHUB_AUTH_CACHE_SECONDS="0",
            CONVHUB_LOG_LEVEL="INFO",
            CONVHUB_E2E_MARKER=MARKER,
        )
        self.env = env
        self.procs: dict[str, subprocess.Popen] = {}
        self.secrets: dict[str, str] = {}

    def cli(self, *args: str, check: bool = True) -> str:
        out = subprocess.run(CONVHUB + list(args), env=self.env, capture_output=True, text=True, timeout=60)
        if check:
            assert out.returncode == 0, f"convhub {' '.join(args)}: {out.stderr}"
        return out.stdout

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        log = (self.tmp / f"{name}.log").open("w")
        proc = subprocess.Popen(
            CONVHUB + list(args), env=env or self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str, timeout: float = 20) -> int:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        self.procs.clear()

    def add_factory(self, name: str, *workers: str) -> str:
        secret = f"{name}-secret-{uuid.uuid4().hex}"
        args = ["factories", "add", name, "--secret", secret]
        for w in workers:
            args += ["--worker", w]
        self.cli(*args)
        self.secrets[name] = secret
        return secret

    def submit(self, path: Path, application: str, version: str, fmt: str) -> int:
        # These tests are about factories converting: every submission is converted (the same document is
        # submitted again and again), not answered from the result cache (tests/integration/test_farm_cache.py).
        out = self.cli(
            "jobs", "submit", str(path), "--client", CLIENT, "--application", application, "--version", version, "--format", fmt,
            "--no-cache",
        )
        assert " QUEUED on convert." in out, out
        return int(out.split()[1])

    def show(self, job_id: int) -> dict:
        return json.loads(self.cli("jobs", "show", str(job_id)))

    # Direct reads of the SQLite file, for fast polling and the result bytes.
    def row(self, job_id: int) -> dict:
        with sqlite3.connect(self.data / "convhub.db", timeout=10) as c:
            c.row_factory = sqlite3.Row
            r = c.execute(
                "SELECT id, guid, state, attempts, lease_owner, lease_token, failure_reason FROM jobs WHERE id = ?",
                (job_id,),
            ).fetchone()
        return dict(r)

    def result(self, job_id: int) -> tuple[str, str, bytes]:
        with sqlite3.connect(self.data / "convhub.db", timeout=10) as c:
            fmt, filename, blob = c.execute("SELECT format, filename, blob_id FROM results WHERE job_id = ?", (job_id,)).fetchone()
            data = b"".join(r[0] for r in c.execute("SELECT data FROM blob_chunks WHERE blob_id = ? ORDER BY seq", (blob,)))
        return fmt, filename, data

    def wait_state(self, job_id: int, state: int, timeout: float) -> dict:
        def check() -> dict | None:
            for name, proc in self.procs.items():  # a process that died fails the wait at once
                if proc.poll() is not None:
                    raise AssertionError(f"{name} exited with {proc.returncode}:\n{self.log(name)[-3000:]}")
            r = self.row(job_id)
            return r if r["state"] == state else None

        return wait_for(check, timeout, f"job {job_id} in state {state}")


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _marked_processes() -> list[int]:
    """Processes (e.g. an orphaned `sleep`) whose environment carries this module's marker."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if f"CONVHUB_E2E_MARKER={MARKER}".encode() in environ and cmd.startswith(b"sleep\0"):
            found.append(int(pid))
    return found


@pytest.fixture(scope="module")
def lo_version() -> str:
    missing = libreoffice_missing()
    require("LibreOffice", missing is None, missing or "")
    out = subprocess.run(CONVHUB + ["factory", "workers"], capture_output=True, text=True, timeout=120, check=True).stdout
    writer = [w for w in json.loads(out) if w["application"] == "LibreOffice Writer"]
    assert writer and set(writer[0]["formats"]) == {"pdf", "png", "odf"}, out
    return writer[0]["version"]


@pytest.fixture(scope="module")
def odt(lo_version, tmp_path_factory) -> Path:
    """A three-page ODT, made by soffice from flat XML."""
    base = tmp_path_factory.mktemp("doc")
    (base / "three.fodt").write_text(flat_odt(3), encoding="utf-8")
    subprocess.run(
        ["soffice", f"-env:UserInstallation={(base / 'profile').as_uri()}", "--headless", "--convert-to", "odt",
         "--outdir", str(base), str(base / "three.fodt")],
        check=True, capture_output=True, timeout=120,
    )
    with zipfile.ZipFile(base / "three.odt") as zf:
        assert zf.read("mimetype") == b"application/vnd.oasis.opendocument.text"
    return base / "three.odt"


@pytest.fixture(scope="module")
def server(lo_version, tmp_path_factory):  # type: ignore[no-untyped-def]
    srv = Server(tmp_path_factory.mktemp("e2e"))
    try:
        srv.cli("db", "upgrade")
        writer = f"LibreOffice Writer|{lo_version}|odt|pdf,png,odf"
        with ThreadPoolExecutor(6) as ex:  # each is its own process with a slow KDF: in parallel
            futures = [
                ex.submit(srv.cli, "clients", "add", CLIENT, "--secret", CLIENT_SECRET),
                ex.submit(srv.add_factory, "lo-1", writer),
                ex.submit(srv.add_factory, "lo-2", writer),
                ex.submit(srv.add_factory, "stuck-1", writer),
                ex.submit(srv.add_factory, "hang-1", "Hang|1|odt|pdf"),
                ex.submit(srv.add_factory, "push-1", "Copy|1|odt|odf"),
            ]
            for f in futures:
                f.result()
        srv.start("web", "web", "--host", "127.0.0.1", "--port", str(srv.port), "--workers", "1")
        srv.start("beat", "beat")
        srv.start("worker", "worker", "--pool", "threads", "--concurrency", "2")
        wait_for(lambda: _healthy(srv.base + "/healthz"), 60, "healthz")
        # XML-RPC is mounted (protocol/xmlrpc): an authenticated empty poll answers {}.
        proxy = xmlrpc.client.ServerProxy(f"http://hang-1:{srv.secrets['hang-1']}@127.0.0.1:{srv.port}/xmlrpc")
        assert proxy.jobs.poll("hang-1") == {}
        yield srv
    finally:
        srv.kill_all()
        for pid in _marked_processes():
            os.kill(pid, signal.SIGKILL)


def test_libreoffice_factory_converts_pdf_png_odf(server, odt, lo_version):
    server.start(
        "lo-1", "factory", "run", "--server", server.base, "--name", "lo-1", "--secret", server.secrets["lo-1"],
        "--concurrency", "2",
    )
    try:
        fmts = ("pdf", "png", "odf")
        with ThreadPoolExecutor(3) as ex:
            submitted = ex.map(lambda f: server.submit(odt, "LibreOffice Writer", lo_version, f), fmts)
            ids = dict(zip(fmts, submitted, strict=True))
        for job_id in ids.values():
            server.wait_state(job_id, 3, 60)
    finally:
        assert server.stop("lo-1") == 0, server.log("lo-1")  # SIGTERM: clean exit
    for fmt, job_id in ids.items():
        info = server.show(job_id)
        assert (info["state"], info["attempts"], info["leaseOwner"]) == ("COMPLETE", 1, "lo-1")
        assert info["result"]["format"] == fmt
    fmt, name, pdf = server.result(ids["pdf"])
    assert (fmt, name) == ("pdf", "three.pdf") and pdf_pages(pdf) == 3
    fmt, name, png = server.result(ids["png"])
    assert (fmt, name) == ("png", "three.png") and png_size(png) == (794, 1123)  # A4 at 96 dpi
    fmt, name, odf = server.result(ids["odf"])
    assert (fmt, name) == ("odf", "three.odt")
    with zipfile.ZipFile(io.BytesIO(odf)) as zf:
        assert zf.read("mimetype") == b"application/vnd.oasis.opendocument.text"
        assert b"Page 3" in zf.read("content.xml")


def test_hanging_converter_is_killed_at_the_timeout_and_the_job_requeued(server, odt):
    ini = server.tmp / "hang.ini"
    ini.write_text(HANG_INI, encoding="utf-8")
    job_id = server.submit(odt, "Hang", "1", "pdf")
    out = subprocess.run(  # timed by bench/bench_timeouts.py (factory_once_hang_timeout_2s_seconds)
        CONVHUB + ["factory", "run", "--config", str(ini), "--server", server.base, "--name", "hang-1",
                   "--secret", server.secrets["hang-1"], "--once"],
        env=server.env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    info = server.show(job_id)
    assert (info["state"], info["attempts"], info["leaseOwner"]) == ("QUEUED", 1, None), info
    assert "did not finish within 2 s" in info["failureReason"], info
    assert _marked_processes() == []  # the whole process group of `sleep 600` was killed
    assert "did not finish within 2 s" in out.stderr


def test_kill_9_mid_job_lease_expires_and_second_factory_completes(server, odt, lo_version):
    ini = server.tmp / "stuck.ini"
    ini.write_text(STUCK_INI.format(version=lo_version), encoding="utf-8")
    stuck = server.start(
        "stuck-1", "factory", "run", "--config", str(ini), "--server", server.base, "--name", "stuck-1",
        "--secret", server.secrets["stuck-1"],
    )
    job_id = server.submit(odt, "LibreOffice Writer", lo_version, "pdf")
    held = server.wait_state(job_id, 2, 30)  # PROCESSING: stuck-1 extended its lease, mid-job
    assert held["lease_owner"] == "stuck-1" and held["attempts"] == 1
    sleeper = wait_for(_marked_processes, 10, "the stuck conversion")
    os.kill(stuck.pid, signal.SIGKILL)
    stuck.wait(10)
    server.procs.pop("stuck-1")
    for pid in sleeper:  # its `sleep` runs in its own process group and outlives it
        os.kill(pid, signal.SIGKILL)

    # No heartbeat any more: the lease runs out and beat's reclaim puts the job back in QUEUED.
    back = server.wait_state(job_id, 0, LEASE + RECLAIM + 15)
    assert back["attempts"] == 1 and back["failure_reason"].startswith("lease expired")
    server.start(
        "lo-2", "factory", "run", "--server", server.base, "--name", "lo-2", "--secret", server.secrets["lo-2"],
    )
    try:
        server.wait_state(job_id, 3, 60)
    finally:
        assert server.stop("lo-2") == 0, server.log("lo-2")
    info = server.show(job_id)
    assert (info["state"], info["attempts"], info["leaseOwner"]) == ("COMPLETE", 2, "lo-2")
    fmt, _, pdf = server.result(job_id)
    assert fmt == "pdf" and pdf_pages(pdf) == 3

    # The killed factory's late upload, replayed with its old lease token: refused, nothing changes.
    proxy = xmlrpc.client.ServerProxy(f"http://stuck-1:{server.secrets['stuck-1']}@127.0.0.1:{server.port}/xmlrpc")
    with pytest.raises(xmlrpc.client.Fault) as err:
        proxy.jobs.finish("stuck-1", held["guid"], "pdf", xmlrpc.client.Binary(b"%PDF-1.4 late"), held["lease_token"])
    assert err.value.faultCode == 409
    assert server.result(job_id)[2] == pdf and server.show(job_id)["leaseOwner"] == "lo-2"


def test_push_factory_cli_completes_a_job_from_its_queue(server, odt):
    ini = server.tmp / "copy.ini"
    ini.write_text(COPY_INI, encoding="utf-8")
    server.start("push-1", "factory", "celery", "--config", str(ini), "--name", "push-1", "--concurrency", "2")
    try:
        ids = [server.submit(odt, "Copy", "1", "odf") for _ in range(2)]
        for job_id in ids:
            server.wait_state(job_id, 3, 60)
    finally:
        assert server.stop("push-1", timeout=30) == 0, server.log("push-1")
    for job_id in ids:
        info = server.show(job_id)
        assert (info["state"], info["attempts"], info["leaseOwner"]) == ("COMPLETE", 1, "push-1")
        assert server.result(job_id) == ("odf", "three.odt", odt.read_bytes())
    assert "convert.copy.1" in server.log("push-1")
