"""A database outage is logged as one warning (and one info line when it ends), plus one line per
failing request: no traceback. Real PostgreSQL made unavailable (connections refused on its database
and the server's sessions terminated) under a real `convhub web`, driven over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
import xmlrpc.client

import pytest
import requests
from sqlalchemy import create_engine, text

from protocol.soap import NS, PATH
from tests.conftest import PG_ADMIN_URL, free_port, port_open, require, wait_for
from tests.e2e.test_serve import CONVHUB, _cli, _env, _get

FACTORY, FSECRET = "f1", "factory-secret-1"
REQUESTS = 12  # of each kind during the outage


@pytest.fixture
def outage_db():  # type: ignore[no-untyped-def]
    """A migrated PostgreSQL database of this test's own, and a switch to refuse its connections."""
    require("PostgreSQL", port_open("127.0.0.1", 5432))
    from app.db.migrate import upgrade

    name = f"convhub_outage_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)

    def available(up: bool) -> None:
        with admin.connect() as c:
            c.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {"true" if up else "false"}'))
            if not up:
                c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))

    try:
        yield url, available
    finally:
        with admin.connect() as c:
            c.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
            c.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"))
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def soap_status(base: str) -> tuple[int, str]:
    body = (
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
        f'<ns2:getContentConvertStatusRequest xmlns:ns2="{NS}"><clientApplicationId>petshow</clientApplicationId>'
        "<clientApplicationCredentials>Wf-long-enough-secret</clientApplicationCredentials><jobId>1</jobId>"
        "</ns2:getContentConvertStatusRequest></soap:Body></soap:Envelope>"
    )
    r = requests.post(base + PATH, data=body.encode(), headers={"Content-Type": "text/xml; charset=utf-8"}, timeout=30)
    return r.status_code, r.text


def xmlrpc_poll(base: str) -> object:
    proxy = xmlrpc.client.ServerProxy(f"http://{FACTORY}:{FSECRET}@{base.split('://', 1)[1]}/xmlrpc")
    try:
        return proxy.jobs.poll(FACTORY)
    except xmlrpc.client.Fault as f:
        return f


def test_an_outage_logs_one_warning_one_recovery_and_no_traceback(tmp_path, outage_db):
    url, available = outage_db
    env = _env(tmp_path / "var")
    env.update(CONVHUB_DATABASE_URL=url, CONVHUB_LOG_LEVEL="INFO")
    _cli(env, "clients", "add", "petshow", "--secret", "Wf-long-enough-secret")
    _cli(env, "factories", "add", FACTORY, "--secret", FSECRET, "--worker", "LibreOffice Writer|7.4|odt|pdf")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "web.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(CONVHUB + ["web", "--port", str(port), "--workers", "1"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for(lambda: _get(base + "/healthz")[0] == 200, 60, "healthz")
            assert xmlrpc_poll(base) == {}  # nothing queued: an empty poll, the database answers

            available(False)
            for _ in range(REQUESTS):
                fault = xmlrpc_poll(base)
                assert isinstance(fault, xmlrpc.client.Fault) and fault.faultCode == 503
                http, reply = soap_status(base)
                assert http == 200 and "service temporarily unavailable" in reply and "<status>0</status>" not in reply
                assert _get(base + "/healthz")[0] == 503
                assert requests.get(base + "/metrics", timeout=30).status_code == 200

            available(True)
            wait_for(lambda: xmlrpc_poll(base) == {}, 30, "an answer after the outage")
            assert _get(base + "/healthz")[0] == 200
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=40)
    lines = log_path.read_text().splitlines()
    assert not [ln for ln in lines if "Traceback" in ln or ln.startswith("  File ")], "\n".join(lines[-60:])
    outage = [ln for ln in lines if "database unavailable (" in ln and "WARNING" in ln]
    back = [ln for ln in lines if "database available again after" in ln and "INFO" in ln]
    assert len(outage) == 1 and len(back) == 1, "\n".join(lines[-60:])
    # One line per failing XML-RPC request (its fault), nothing more from the adapters.
    assert len([ln for ln in lines if "xmlrpc: database or broker unavailable" in ln]) == REQUESTS
