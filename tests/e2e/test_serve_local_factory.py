"""`convhub serve` converts on its own: with LibreOffice installed it runs the reference factory as
one more supervised child, registered for this machine's applications with a secret it generates
once into the data directory. A page range of a three-page ODT comes back as a two-page PDF; the
factory child killed with SIGKILL is restarted and leaves no soffice behind; a second start reuses the secret; `--factory off`
runs no factory and `--factory on` without LibreOffice is a one-line error.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import uuid
import zipfile
from pathlib import Path

import pytest

from app.factory.converters import libreoffice_version
from tests.conftest import free_port, require, wait_for
from tests.e2e.test_serve import CONVHUB, _env, _get
from tests.e2e.test_serve_supervisor import child, children
from tests.factorykit import pdf_pages
from tests.integration.factory.conftest import flat_odt, libreoffice_missing

pytestmark = [pytest.mark.libreoffice, pytest.mark.slow]

MARKER = f"convhub-serve-factory-{uuid.uuid4().hex[:12]}"  # in the environment of everything serve starts
CLIENT, CLIENT_SECRET = "petshow", "petshow-secret-0123456789"
COMPLETE = 3  # JobState.COMPLETE


def _marked() -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if f"CONVHUB_E2E_MARKER={MARKER}".encode() in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


def _office_processes() -> set[int]:
    """This test's running soffice processes (oosplash and soffice.bin; zombies are gone)."""
    found = set()
    for pid in _marked():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (b"soffice" in cmd or b"oosplash" in cmd):
            found.add(pid)
    return found


class Served:
    """One `convhub serve` on a free port over a data directory; stopped (and its LibreOffice
    instances, which run in their own sessions, killed) by `stop`."""

    def __init__(self, data: Path, log: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.env = env or dict(_env(data), CONVHUB_E2E_MARKER=MARKER)
        self.data = data
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        with log.open("w") as fh:
            self.proc = subprocess.Popen(
                CONVHUB + ["serve", "--port", str(self.port), *args],
                env=self.env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def healthy(self) -> None:
        def ok() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            return _get(self.base + "/healthz")[0] == 200

        wait_for(ok, 90, "healthz")

    def cli(self, *args: str) -> str:
        out = subprocess.run(CONVHUB + list(args), env=self.env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"convhub {' '.join(args)}: {out.stderr}"
        return out.stdout

    def submit(self, path: Path, version: str, *extra: str) -> int:
        out = self.cli("jobs", "submit", str(path), "--client", CLIENT, "--application", "LibreOffice Writer",
                       "--version", version, "--format", "pdf", *extra)
        assert " QUEUED on convert." in out, out
        return int(out.split()[1])

    def result_when_complete(self, job_id: int) -> bytes:
        def done() -> bytes | None:
            with sqlite3.connect(self.data / "convhub.db", timeout=10) as c:
                state, reason = c.execute("SELECT state, failure_reason FROM jobs WHERE id = ?", (job_id,)).fetchone()
                assert not reason, reason
                if state != COMPLETE:
                    return None
                (blob,) = c.execute("SELECT blob_id FROM results WHERE job_id = ?", (job_id,)).fetchone()
                return b"".join(r[0] for r in c.execute("SELECT data FROM blob_chunks WHERE blob_id = ? ORDER BY seq", (blob,)))

        return wait_for(done, 180, f"job {job_id} COMPLETE")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for pid in _marked():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return self.proc.returncode


@pytest.fixture(scope="module")
def lo() -> str:
    missing = libreoffice_missing()
    require("LibreOffice", missing is None, missing or "")
    version = libreoffice_version()
    assert version is not None
    return version


@pytest.fixture(scope="module")
def three_page_odt(lo, tmp_path_factory) -> Path:
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


def test_serve_runs_a_local_factory_that_converts_and_is_restarted(lo, three_page_odt, tmp_path):
    data = tmp_path / "var"
    srv = Served(data, tmp_path / "serve-1.log")
    try:
        srv.healthy()
        log = srv.log()
        assert "conversion targets (local factory 'local'):" in log
        for app in ("Writer", "Calc", "Impress"):
            doctype = {"Writer": "odt", "Calc": "ods", "Impress": "odp"}[app]
            assert f"    LibreOffice {app} {lo}: {doctype} -> pdf, png, odf" in log
        secret_file = data / "local-factory.secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        secret = secret_file.read_text()
        assert len(secret.strip()) >= 20
        assert "local" in srv.cli("factories", "list")

        srv.cli("clients", "add", CLIENT, "--secret", CLIENT_SECRET)
        job_id = srv.submit(three_page_odt, lo, "--pages", "2-3")
        pdf = srv.result_when_complete(job_id)
        assert pdf.startswith(b"%PDF") and pdf_pages(pdf) == 2

        # The supervisor restarts a killed factory, and the killed one's soffice processes are gone
        # (its UNO bridges kill them).
        factory = wait_for(lambda: child(srv.proc.pid, "app.cli factory run"), 30, "the factory child")
        office = _office_processes()
        assert office, "the factory's LibreOffice instances"
        os.kill(factory, signal.SIGKILL)
        wait_for(lambda: (p := child(srv.proc.pid, "app.cli factory run")) not in (None, factory) and p, 30, "a new factory")
        assert "factory killed by SIGKILL; restarting" in srv.log()
        wait_for(lambda: not (office & _office_processes()) or None, 30, "the killed factory's soffice to be gone")
        assert srv.proc.poll() is None
    finally:
        assert srv.stop() == 0

    # A second start reuses the secret (the same file, untouched) and the factory still authenticates.
    again = Served(data, tmp_path / "serve-2.log", "--factory", "on")
    try:
        again.healthy()
        assert secret_file.read_text() == secret and stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        pdf = again.result_when_complete(again.submit(three_page_odt, lo))
        assert pdf_pages(pdf) == 3
        rows = [line for line in again.cli("factories", "list").splitlines() if line.startswith("local ")]
        assert len(rows) == 1  # registered once, updated in place
    finally:
        assert again.stop() == 0


def test_factory_off_runs_no_factory_child(tmp_path):
    srv = Served(tmp_path / "var", tmp_path / "serve.log", "--factory", "off")
    try:
        srv.healthy()
        wait_for(lambda: len(children(srv.proc.pid)) == 3, 30, "web, worker and beat")
        assert child(srv.proc.pid, "app.cli factory") is None
        assert "no local factory (--factory off)" in srv.log()
        assert not (tmp_path / "var" / "local-factory.secret").exists()
        assert "(none)" in srv.cli("factories", "list")
    finally:
        assert srv.stop() == 0


def test_without_libreoffice_on_is_a_one_line_error_and_auto_starts_without_a_factory(tmp_path):
    env = dict(_env(tmp_path / "var"), PATH=str(tmp_path / "empty-bin"))  # no soffice on the PATH
    out = subprocess.run(CONVHUB + ["serve", "--port", str(free_port()), "--factory", "on"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "--factory on: LibreOffice is not installed" in lines[0], out.stderr
    assert "convhub serving" not in out.stdout

    # auto: the server starts without a factory and its banner says why and how to install.
    srv = Served(tmp_path / "var", tmp_path / "serve.log", env=dict(env, CONVHUB_E2E_MARKER=MARKER))
    try:
        srv.healthy()
        wait_for(lambda: len(children(srv.proc.pid)) == 3, 30, "web, worker and beat")
        assert child(srv.proc.pid, "app.cli factory") is None
        log = srv.log()
        assert "no local factory: LibreOffice is not installed" in log and "install-libreoffice.sh" in log
    finally:
        assert srv.stop() == 0


SERVE_DEPS = Path(__file__).resolve().parents[2] / "scripts" / "serve-deps.sh"


def test_make_serve_setup_says_in_one_line_how_to_install_when_it_cannot(tmp_path):
    # Not root (or not Debian) and no LibreOffice: one line on stdout, status 0 (serve still starts).
    env = {"PATH": "/usr/bin:/bin", "CONVHUB_UNO_PYTHON": str(tmp_path / "no-python")}
    argv = ["sh", str(SERVE_DEPS)]
    if os.geteuid() == 0:
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and "LibreOffice is not installed" in lines[0] and "install-libreoffice.sh" in lines[0]


def test_make_serve_setup_is_quiet_when_libreoffice_is_installed(lo):
    out = subprocess.run(["sh", str(SERVE_DEPS)], capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout, out.stderr) == (0, "", "")
