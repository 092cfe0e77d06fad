"""Secrets never reach the logs: one representative session with logging at DEBUG, configured as the
web tier configures it (text and JSON formats both rendered), then every captured line, the CLI's
stderr and any log file under the data directory are searched for every secret used, in the clear,
as HTTP Basic credentials, and for the stored hashes of the registered ones."""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import close_runtime, sqlite_db, start_server
from tests.hostile.kit import Target, basic, p, request_bytes, s, send, soap, soap_body, xmlrpc, xmlrpc_body

CLIENT = ("sess-client", "sess-client-secret-7f3a9c")
FACTORY = ("sess-factory", "sess-factory-secret-4d8e1b")
OPERATOR = ("admin", "sess-operator-secret-2c6b55")
WRONG = ["wrong-secret-91b2aa", "wrong-factory-secret-e55f", "wrong-operator-secret-0a7d"]
WRITER = "LibreOffice Writer|7.4|odt|pdf,png,odf"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        from app.logs import JsonFormatter

        self.json = JsonFormatter()
        self.text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.text.format(record))
        self.lines.append(self.json.format(record))


@pytest.fixture
def logged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Collect]:
    """CONVHUB_* for this session, logging at DEBUG as `convhub web` sets it up, one collecting handler."""
    data = tmp_path / "var"
    data.mkdir()
    env = {
        "CONVHUB_DATA_DIR": str(data),
        "CONVHUB_DATABASE_URL": sqlite_db(tmp_path),
        "CONVHUB_BROKER_URL": f"sqla+sqlite:///{data / 'broker.db'}",
        "CONVHUB_LOG_LEVEL": "DEBUG",
        "CONVHUB_OPERATOR_USER": OPERATOR[0],
        "CONVHUB_OPERATOR_PASSWORD": OPERATOR[1],
        "CONVHUB_CALLBACK_ALLOW_PRIVATE": "true",
        "CONVHUB_AUTH_THROTTLE_PER_NAME": "3",  # some requests are throttled too
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("CONVHUB_CLIENT_SECRET", raising=False)
    from app.config import load_settings
    from app.logs import configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging(load_settings())
    collect = Collect()
    root.addHandler(collect)
    try:
        yield collect
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_a_whole_session_logs_no_secret(logged: Collect, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from app import cli
    from app.config import load_settings
    from app.runtime import build_runtime

    # The operator registers a client and a factory with given secrets.
    assert cli.main(["clients", "add", CLIENT[0], "--secret", CLIENT[1]]) == 0
    assert cli.main(["factories", "add", FACTORY[0], "--secret", FACTORY[1], "--worker", WRITER]) == 0
    rt = build_runtime(load_settings(), broker=False)
    srv = start_server(rt)
    try:
        t = Target(srv, rt, "sqlite")
        doc = base64.b64encode(b"PK session document").decode()
        for secret in (CLIENT[1], WRONG[0]):  # SOAP, right and wrong
            who = (CLIENT[0], secret)
            send(t, soap(soap_body("getContentConvertCounts", [], creds=who)))
            up = send(t, soap(soap_body("contentUpload", [("content", doc), ("filename", "a.odt")], creds=who)))
            ident = re.search(rb"<contentIdentifier>([^<]+)<", up.body)
            fields = [("contentIdentifier", ident.group(1).decode() if ident else "x"), ("application", "LibreOffice Writer"), ("version", "7.4")]
            send(t, soap(soap_body("contentConvert", fields, creds=who)))
            send(t, soap(soap_body("getContentConvertResult", [("jobId", "1")], creds=who)))
        for secret in (FACTORY[1], WRONG[1]):  # XML-RPC, right and wrong
            auth = (FACTORY[0], secret)
            send(t, xmlrpc(xmlrpc_body("jobs.poll", p(s(FACTORY[0]))), auth=auth))
            send(t, xmlrpc(xmlrpc_body("jobs.finish", "".join(p(s(v)) for v in [FACTORY[0], "nope", "pdf", "UEs="])), auth=auth))
        for secret in (OPERATOR[1], WRONG[2]):  # /ops with HTTP Basic, right and wrong
            send(t, request_bytes("GET", "/ops/data.json", headers={"Authorization": basic(OPERATOR[0], secret)}))
        for _ in range(4):  # until throttled: the throttled answers and their log lines too
            send(t, soap(soap_body("getContentConvertCounts", [], creds=(CLIENT[0], WRONG[0]))))
            send(t, xmlrpc(xmlrpc_body("jobs.poll", p(s(FACTORY[0]))), auth=(FACTORY[0], WRONG[1])))
        # The command-line client, with --secret, right and wrong.
        src = tmp_path / "in.odt"
        src.write_bytes(b"PK cli document")
        for secret in (CLIENT[1], WRONG[0]):
            cli.main(["jobs", "result", "1", "--server", srv.url, "--client", CLIENT[0], "--secret", secret, "-o", str(tmp_path / "out.pdf")])
            cli.main(["convert", str(src), "--to", "pdf", "--server", srv.url, "--client", CLIENT[0], "--secret", secret, "--timeout", "0.2"])
        with rt.db.read_session() as session:
            from sqlalchemy import text

            hashes = [h for (h,) in session.execute(text("SELECT secret_hash FROM client_applications UNION ALL SELECT secret_hash FROM factories"))]
    finally:
        srv.stop()
        close_runtime(rt)
    captured = capfd.readouterr()
    files = [f.read_text("utf-8", "replace") for f in Path(load_settings().data_dir).rglob("*.log")]
    haystack = "\n".join([*logged.lines, captured.err, *files])
    assert len(logged.lines) > 50 and "convhub.http" in haystack and "contentService" in haystack  # the session was logged
    secrets = [CLIENT[1], FACTORY[1], OPERATOR[1], *WRONG]
    for name, secret in [(CLIENT[0], CLIENT[1]), (FACTORY[0], FACTORY[1]), (OPERATOR[0], OPERATOR[1]), (FACTORY[0], WRONG[1]), (OPERATOR[0], WRONG[2])]:
        secrets.append(base64.b64encode(f"{name}:{secret}".encode()).decode())
    assert len(hashes) == 2
    for secret in [*secrets, *hashes, *(h.rsplit("$", 1)[-1] for h in hashes)]:
        assert secret not in haystack, f"{secret[:12]}... found in the logs"
    assert CLIENT[1] not in captured.out and FACTORY[1] not in captured.out  # given secrets are not echoed either
