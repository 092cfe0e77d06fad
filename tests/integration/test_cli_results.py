"""`convhub convert`, `jobs result` and `jobs submit --wait` as a user runs them: subprocesses.

Remote mode talks SOAP to the real WSGI app on a socket (`live_server`); local mode works on the
same database as the test (SQLite and PostgreSQL). The test plays the factory meanwhile: over XML-RPC
(remote) or through the poll/finish services (local), exactly as a factory would.
"""

from __future__ import annotations

import base64
import os
import pty
import select
import subprocess
import sys
import xmlrpc.client
from pathlib import Path

import pytest

from tests.conftest import (
    add_client,
    add_factory,
    close_runtime,
    make_settings,
    start_server,
    submit_job,
    wait_for,
)
from tests.integration.xmlrpc.xrkit import FACTORY, SECRET, proxy

CONVHUB = [sys.executable, "-m", "app.cli"]
WRITER = "LibreOffice Writer|7.4|odt|pdf,png,odf"
OLD_WRITER = "LibreOffice Writer|6.4|odt|pdf"
CALC = "LibreOffice Calc|7.4|ods|pdf,png,odf"
ABIWORD = "AbiWord|3.0|odt|pdf"
CLIENT, CLIENT_SECRET = "petshow", "Wf"


def base_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVHUB_")}
    env["CONVHUB_DATA_DIR"] = str(tmp_path / "var")
    env.update(extra)
    return env


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_process_left():  # type: ignore[no-untyped-def]
    """A waiting CLI of a failed test is killed, not left waiting for a job that never ends."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start(args: list[str], cwd: Path, env: dict[str, str], **kw: object) -> subprocess.Popen:
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    proc = subprocess.Popen(CONVHUB + args, cwd=cwd, env=env, **kw)  # type: ignore[call-overload]
    STARTED.append(proc)
    return proc


def run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(CONVHUB + args, cwd=cwd, env=env, capture_output=True, timeout=90)


def finish_over_xmlrpc(url: str, data: bytes, fmt: str = "pdf") -> dict:
    """Poll until a job comes, then finish it with `data`; the polled job."""
    fp = proxy(url)
    job = wait_for(lambda: fp.jobs.poll(FACTORY), 60, "a job to poll", interval=0.1)
    assert fp.jobs.finish(FACTORY, job["job"], fmt, xmlrpc.client.Binary(data), job["lease"])
    return job


# ------------------------------------------------------------------ remote: SOAP


@pytest.fixture
def server(live_server):  # type: ignore[no-untyped-def]
    rt = live_server.runtime
    add_client(rt, CLIENT, CLIENT_SECRET)
    add_factory(rt, FACTORY, SECRET, workers=(WRITER, OLD_WRITER, ABIWORD, CALC))
    return live_server


def remote(url: str, secret: str = CLIENT_SECRET) -> list[str]:
    return ["--server", url, "--client", CLIENT, "--secret", secret]


def test_convert_over_soap_streams_both_ways_and_writes_the_stem_pdf(server, tmp_path):
    # Over two 6,000,000-byte parts each way: a multi-part streamed upload and a multi-part result.
    doc = os.urandom(12_000_001)
    pdf = b"%PDF-1.7 " + os.urandom(13_000_000)
    (tmp_path / "report.odt").write_bytes(doc)
    proc = start(["convert", "report.odt", "--to", "pdf", "--pages", "2-3", *remote(server.url)], tmp_path, base_env(tmp_path))
    job = finish_over_xmlrpc(server.url, pdf)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    # Writer at its highest version, chosen for an odt; the page range and format as asked.
    assert (job["application"], job["version"], job["format"]) == ("LibreOffice Writer", "7.4", "pdf")
    assert (job["pageStart"], job["pageEnd"], job["filename"]) == (2, 3, "report.odt")
    assert base64.b64decode(job["document"]) == doc
    assert (tmp_path / "report.pdf").read_bytes() == pdf
    assert out.decode().startswith(f"wrote {tmp_path / 'report.pdf'} ({len(pdf)} bytes, pdf, job ")
    assert err == b""  # piped: no progress lines
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".convhub-")) == []


def test_convert_over_soap_failed_job_exits_1_with_the_reason(make_runtime, tmp_path):
    rt = make_runtime(max_attempts=1)
    srv = start_server(rt)
    try:
        add_client(rt, CLIENT, CLIENT_SECRET)
        add_factory(rt, FACTORY, SECRET, workers=(WRITER,))
        (tmp_path / "broken.odt").write_bytes(b"PK not really")
        proc = start(["convert", "broken.odt", "--to", "png", *remote(srv.url)], tmp_path, base_env(tmp_path))
        fp = proxy(srv.url)
        job = wait_for(lambda: fp.jobs.poll(FACTORY), 60, "a job to poll", interval=0.1)
        assert fp.jobs.fail(FACTORY, job["job"], "not an ODF package", job["lease"])["jobStatus"] == 4
        out, err = proc.communicate(timeout=60)
    finally:
        srv.stop()
    assert proc.returncode == 1
    assert err.decode().strip().splitlines() == [f"convhub: job {job_id_of(rt, job['job'])} FAILED: not an ODF package"]
    assert out == b"" and not (tmp_path / "broken.png").exists()


def job_id_of(rt, guid: str) -> int:  # type: ignore[no-untyped-def]
    from app.services import admin

    with rt.db.read_session() as s:
        return admin.resolve_job_id(s, guid)


def test_convert_over_soap_refusals_are_one_line(server, tmp_path):
    env = base_env(tmp_path)
    (tmp_path / "a.odt").write_bytes(b"PK odt")
    (tmp_path / "slides.odp").write_bytes(b"PK odp")
    (tmp_path / "letter.docx").write_bytes(b"PK docx")
    cases = [
        (["convert", "a.odt", "--to", "pdf", *remote(server.url, "wrong")], 1, "status 501: authentication failed"),
        (["convert", "slides.odp", "--to", "pdf", *remote(server.url)], 1,
         "no registered factory converts odp to pdf at http://127.0.0.1:"),
        (["convert", "a.odt", "--to", "odf", "-o", "b.odt", "--application", "AbiWord", *remote(server.url)], 1,
         "no registered factory converts odt to odf with AbiWord at"),
        (["convert", "a.odt", "--to", "pdf", "--pages", "3-2", *remote(server.url)], 2, "bad page range 3-2"),
        (["convert", "letter.docx", "--to", "pdf", *remote(server.url)], 2, "convhub converts ODF documents"),
        (["convert", "missing.odt", "--to", "pdf", *remote(server.url)], 2, "missing.odt: no such file"),
        (["convert", "a.odt", "--to", "pdf", "--server", server.url], 2, "--server needs --client and --secret"),
        (["jobs", "result", "0b1d-guid", *remote(server.url)], 1, "over SOAP a job is named by its jobId"),
        (["jobs", "result", "4242", *remote(server.url)], 1, "status 508: unknown jobId 4242"),
        (["convert", "a.odt", "--to", "pdf", *remote("http://127.0.0.1:9")], 1, "ConnectionRefusedError"),
    ]
    errors = []
    for args, code, needle in cases:
        done = run(args, tmp_path, env)
        lines = done.stderr.decode().strip().splitlines()
        assert done.returncode == code, (args, done.stderr)
        assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("convhub: "), (args, lines)
        errors.append(lines[0])
    # Remote: the user cannot start the server's factories; the hint says whom to ask.
    assert errors[1].endswith("; ask the server's operator to start one for LibreOffice Impress")
    assert not list(tmp_path.glob("*.pdf"))


def test_jobs_result_over_soap_to_stdout_and_by_default_name(server, tmp_path):
    from app.services import admin

    rt = server.runtime
    with rt.db.read_session() as s:
        client_id = admin.client_by_name(s, CLIENT).id
    job_id, _ = submit_job(rt, client_id, filename="letter.odt", fmt="png")
    png = b"\x89PNG\r\n\x1a\n" + os.urandom(1000)
    finish_over_xmlrpc(server.url, png, "png")
    env = base_env(tmp_path)
    done = run(["jobs", "result", str(job_id), "-o", "-", *remote(server.url)], tmp_path, env)
    assert done.returncode == 0 and done.stdout == png and done.stderr == b""
    done = run(["jobs", "result", str(job_id), *remote(server.url)], tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "letter.png").read_bytes() == png


# ------------------------------------------------------------------ local: this machine's database


@pytest.fixture
def local(any_db_url, tmp_path):  # type: ignore[no-untyped-def]
    """A runtime on the test's database (real clock: the CLI shares it) and the CLI's environment."""
    from app.runtime import build_runtime

    settings = make_settings(tmp_path, database_url=any_db_url)
    rt = build_runtime(settings)
    env = base_env(tmp_path, CONVHUB_DATABASE_URL=settings.database_url, CONVHUB_BROKER_URL=settings.broker_url)
    add_factory(rt, "f1", "factory-secret-1", workers=(WRITER, CALC))
    yield rt, env
    close_runtime(rt)


def claim(rt):  # type: ignore[no-untyped-def]
    """One poll as factory f1, through the service a factory's jobs.poll calls."""
    from app.services.poll import poll

    with rt.db.read_session() as s:
        factory = rt.auth.factory(s, "f1", "factory-secret-1", rt.now())
    return poll(rt.db, rt.now(), rt.policy, rt.mirror, factory)


def claim_from(rt, proc: subprocess.Popen):  # type: ignore[no-untyped-def]
    """Wait for the CLI's job and claim it (fails at once with the CLI's stderr if the CLI ended)."""

    def claimed():  # type: ignore[no-untyped-def]
        assert proc.poll() is None, proc.communicate()
        return claim(rt)

    return wait_for(claimed, 60, "a job to claim", interval=0.1)


def finish_locally(rt, proc: subprocess.Popen, data: bytes):  # type: ignore[no-untyped-def]
    from app.services import leases

    claimed = claim_from(rt, proc)
    with rt.db.session() as s:
        leases.finish(s, rt.now(), rt.notifier, guid=claimed.guid, owner="f1", token=claimed.lease_token, fmt=claimed.format,
                    parts=data, max_bytes=rt.settings.max_document_bytes)
    return claimed


def fail_locally(rt, proc: subprocess.Popen, reason: str):  # type: ignore[no-untyped-def]
    from app.services import leases

    claimed = claim_from(rt, proc)
    with rt.db.session() as s:
        state = leases.fail(s, rt.now(), rt.policy, rt.notifier, rt.mirror, guid=claimed.guid, owner="f1",
                          token=claimed.lease_token, reason=reason)
    return claimed, state


def test_local_convert_submits_as_the_cli_client_and_writes_the_result(local, tmp_path):
    rt, env = local
    (tmp_path / "sheet.ods").write_bytes(b"PK ods bytes")
    # The default name would be the input itself here: refused before anything is submitted.
    done = run(["convert", "sheet.ods", "--to", "odf"], tmp_path, env)
    assert done.returncode == 2 and b"sheet.ods would overwrite the input document" in done.stderr
    proc = start(["convert", "sheet.ods", "--to", "odf", "--pages", "2-", "-o", "converted.ods"], tmp_path, env)
    claimed = finish_locally(rt, proc, b"PK converted ods")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (claimed.application, claimed.format, claimed.page_start, claimed.page_end) == ("LibreOffice Calc", "odf", 2, 0)
    assert (tmp_path / "converted.ods").read_bytes() == b"PK converted ods"
    assert (tmp_path / "sheet.ods").read_bytes() == b"PK ods bytes"
    # Piped: no progress lines. (The embedded broker may log a warning here: the CLI and this test
    # both publish to its queues, and kombu's SQL transport can race creating one; the job is safe.)
    assert b"\r" not in err and b"uploading" not in err and b"waiting for a factory" not in err, err

    (tmp_path / "out").mkdir()
    proc = start(["convert", "../sheet.ods", "--to", "odf"], tmp_path / "out", env)
    finish_locally(rt, proc, b"PK converted again")
    assert proc.wait(timeout=60) == 0, proc.stderr.read()  # type: ignore[union-attr]
    assert (tmp_path / "out" / "sheet.ods").read_bytes() == b"PK converted again"

    from app.services import admin

    with rt.db.read_session() as s:
        rows = admin.list_jobs(s, client="convhub-cli")
        names = [c["name"] for c in admin.list_clients(s)]
    assert len(rows) == 2 and names.count("convhub-cli") == 1  # created once, then reused


def test_local_jobs_submit_wait_writes_or_reports_failure(local, tmp_path):
    rt, env = local
    add_client(rt, CLIENT, CLIENT_SECRET)
    (tmp_path / "memo.odt").write_bytes(b"PK memo")
    submit = ["jobs", "submit", "memo.odt", "--client", CLIENT, "--application", "LibreOffice Writer", "--version", "7.4",
              "--format", "pdf", "--pages", "2-3", "--no-cache"]  # each submit below is converted anew
    proc = start([*submit, "--wait", "-o", "memo-2-3.pdf"], tmp_path, env)
    claimed = finish_locally(rt, proc, b"%PDF two pages")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (claimed.page_start, claimed.page_end) == (2, 3)
    assert (tmp_path / "memo-2-3.pdf").read_bytes() == b"%PDF two pages"
    lines = out.decode().splitlines()
    assert lines[0] == f"job {claimed.id} ({claimed.guid}) QUEUED on convert.libreoffice-writer.7-4"
    assert lines[1].startswith(f"wrote memo-2-3.pdf (14 bytes, pdf, job {claimed.id})")

    # The same result again, by GUID, to stdout and by its default name.
    done = run(["jobs", "result", claimed.guid, "-o", "-"], tmp_path, env)
    assert done.returncode == 0 and done.stdout == b"%PDF two pages", done.stderr
    done = run(["jobs", "result", str(claimed.id)], tmp_path, env)
    assert done.returncode == 0 and (tmp_path / "memo.pdf").read_bytes() == b"%PDF two pages"
    (tmp_path / "results").mkdir()
    done = run(["jobs", "result", str(claimed.id), "-o", "results"], tmp_path, env)
    assert done.returncode == 0 and (tmp_path / "results" / "memo.pdf").read_bytes() == b"%PDF two pages"
    assert oct((tmp_path / "results" / "memo.pdf").stat().st_mode & 0o777) == oct(0o666 & ~current_umask())

    # --wait without -o reports the end; -o - keeps stdout for the document alone.
    proc = start([*submit, "--wait"], tmp_path, dict(env, CONVHUB_MAX_ATTEMPTS="1"))
    failed, state = fail_locally(rt, proc, "LibreOffice crashed on page 2")
    out, err = proc.communicate(timeout=60)
    assert int(state) == 4 and proc.returncode == 1
    assert err.decode().splitlines() == [f"convhub: job {failed.id} FAILED: LibreOffice crashed on page 2"]
    done = run(["jobs", "result", str(failed.id)], tmp_path, env)
    assert done.returncode == 1 and f"job {failed.id} FAILED: LibreOffice crashed on page 2" in done.stderr.decode()

    proc = start([*submit, "-o", "-"], tmp_path, env)
    claimed = finish_locally(rt, proc, b"%PDF to stdout")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out == b"%PDF to stdout"
    assert f"job {claimed.id} ({claimed.guid}) QUEUED" in err.decode()


def test_local_result_of_an_unfinished_job_and_the_timeout(local, tmp_path):
    rt, env = local
    client_id = add_client(rt, CLIENT, CLIENT_SECRET)
    job_id, _ = submit_job(rt, client_id)
    done = run(["jobs", "result", str(job_id)], tmp_path, env)
    assert done.returncode == 1
    assert done.stderr.decode().strip() == f"convhub: job {job_id} QUEUED (waiting for a factory): no result yet (add --wait to wait for it)"
    done = run(["jobs", "result", str(job_id), "--wait", "--timeout", "0"], tmp_path, env)
    assert done.returncode == 3 and "gave up waiting after 0 s" in done.stderr.decode()
    done = run(["jobs", "result", "999999"], tmp_path, env)
    assert done.returncode == 1 and done.stderr.decode().strip() == "convhub: no job '999999'"


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_pty(fd: int, buf: bytearray) -> str:
    while select.select([fd], [], [], 0.05)[0]:
        try:
            data = os.read(fd, 65536)
        except OSError:  # the child closed its side
            break
        if not data:
            break
        buf += data
    return buf.decode(errors="replace")


def test_progress_lines_on_a_terminal(local, tmp_path):
    rt, env = local
    (tmp_path / "big.odt").write_bytes(os.urandom(3 * 1024 * 1024))
    master, slave = pty.openpty()
    try:
        proc = start(["convert", "big.odt", "--to", "pdf"], tmp_path, env, stderr=slave)
        os.close(slave)
        seen = bytearray()
        wait_for(lambda: "waiting for a factory" in read_pty(master, seen), 60, "the wait line")
        finish_locally(rt, proc, b"%PDF " + os.urandom(2 * 1024 * 1024))
        out, _ = proc.communicate(timeout=60)
        text = read_pty(master, seen)
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert "uploading big.odt  3.0 of 3.0 MiB  100%" in text
    job_id = out.decode().rsplit("job ", 1)[-1].rstrip(")\n")
    assert f"job {job_id}: big.odt -> pdf with LibreOffice Writer 7.4" in text
    assert f"job {job_id} QUEUED (waiting for a factory)  0:0" in text
    assert "downloading job" in text and "2.0 MiB" in text
    assert out.decode().startswith("wrote ")  # stdout (piped) has only the summary
