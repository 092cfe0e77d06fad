"""Farm policy points 1-3 through the adapters: SOAP contentConvert's priority and 540 with
retryAfterSeconds (zeep, live server), the CLI's clients add|set|list and jobs submit --priority,
/ops' clients section and /metrics' per-client counts."""

from __future__ import annotations

import pytest
import zeep
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from app.cli import main
from app.db.migrate import upgrade
from app.db.models import Base, ClientApplication, Job
from app.services import admin
from app.web import create_app
from protocol.soap import NS, PATH
from tests.conftest import add_factory, start_server, submit_job
from tests.integration.ops.conftest import OPERATOR, OPERATOR_HEADERS

ODT = b"PK\x03\x04 fake odt bytes"
CREDS = {"clientApplicationId": "petshow", "clientApplicationCredentials": "Wf"}


def _counts(rt) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        return {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


@pytest.fixture
def quota_server(make_runtime, any_db_url):  # type: ignore[no-untyped-def]
    """A live server whose default queue quota is 2 (CONVHUB_CLIENT_MAX_QUEUED)."""
    rt = make_runtime(database_url=any_db_url, client_max_queued=2)
    with rt.db.session() as s:
        admin.add_client(s, rt.now(), "petshow", "Wf")
    add_factory(rt)
    srv = start_server(rt)
    yield srv
    srv.stop()


def test_soap_quota_refusal_is_540_with_retry_after_and_stores_nothing(quota_server):
    rt = quota_server.runtime
    svc = zeep.Client(quota_server.url + PATH + "?wsdl").create_service(f"{{{NS}}}ContentService", quota_server.url + PATH)
    up = svc.contentUpload(**CREDS, content=[ODT], filename="a.odt")
    assert up.status == 200
    target = dict(contentIdentifier=up.contentIdentifier, application="LibreOffice Writer", version="7.4", format="pdf")
    first = svc.contentConvert(**CREDS, **target)
    assert first.status == 200 and first.jobId and first.retryAfterSeconds is None
    second = svc.contentConvert(**CREDS, **target, priority=9)
    assert second.status == 200
    before = _counts(rt)
    with rt.db.read_session() as s:
        vtime = s.scalar(select(ClientApplication.vtime))
    full = svc.contentConvert(**CREDS, **target)
    assert full.status == 540
    assert full.statusMessage and "retry" in full.statusMessage
    assert full.retryAfterSeconds == 60 and full.jobId is None
    assert _counts(rt) == before
    with rt.db.read_session() as s:
        assert s.scalar(select(ClientApplication.vtime)) == vtime
        assert s.scalar(select(Job.priority).where(Job.id == second.jobId)) == 9
    bad = svc.contentConvert(**CREDS, **target, priority=10)
    assert bad.status == 599 and "priority" in bad.statusMessage


def test_cli_clients_policy_and_submit_priority(tmp_path, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    db_url = f"sqlite:///{tmp_path / 'convhub.db'}"
    upgrade(db_url)
    for key, value in {
        "CONVHUB_DATA_DIR": str(tmp_path / "var"),
        "CONVHUB_DATABASE_URL": db_url,
        "CONVHUB_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
        "CONVHUB_CLIENT_MAX_QUEUED": "1",
    }.items():
        monkeypatch.setenv(key, value)
    assert main(["clients", "add", "petshow", "--secret", "a-long-enough-secret", "--weight", "3", "--max-in-flight", "4"]) == 0
    assert main(["factories", "add", "f1", "--secret", "factory-secret-1", "--worker", "LibreOffice Writer|7.4|odt|pdf"]) == 0
    capsys.readouterr()
    assert main(["clients", "list"]) == 0
    out = capsys.readouterr().out
    assert "WEIGHT" in out and "MAX_IN_FLIGHT" in out
    row = next(line for line in out.splitlines() if line.startswith("petshow"))
    assert row.split()[4:7] == ["3", "default", "4"], row
    doc = tmp_path / "doc.odt"
    doc.write_bytes(b"PK\x03\x04 odt")
    argv = ["jobs", "submit", str(doc), "--client", "petshow", "--application", "LibreOffice Writer", "--version", "7.4"]
    assert main([*argv, "--priority", "8"]) == 0
    assert " QUEUED on " in capsys.readouterr().out
    assert main(argv) == 1  # CONVHUB_CLIENT_MAX_QUEUED=1
    assert "retry later" in capsys.readouterr().err
    assert main(["clients", "set", "petshow", "--max-queued", "5", "--weight", "2", "--max-in-flight", "-1"]) == 0
    assert main(argv) == 0
    assert main(["clients", "set", "petshow", "--weight", "0"]) == 1
    assert main(["clients", "set", "petshow"]) == 2  # nothing to change: a usage error
    capsys.readouterr()
    assert main(["clients", "list"]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("petshow"))
    assert row.split()[1] == "2" and row.split()[4:7] == ["2", "5", "unlimited"], row


def test_ops_and_metrics_show_per_client_load(make_runtime, any_db_url):
    rt = make_runtime(database_url=any_db_url, operator_user=OPERATOR[0], operator_password=OPERATOR[1])
    with rt.db.session() as s:
        cid = admin.add_client(s, rt.now(), "petshow-secret-client-name", "x", weight=2, max_in_flight=3).id
    add_factory(rt)
    for _ in range(3):
        submit_job(rt, cid)
    app = create_app(rt)
    data = app.test_client().get("/ops/data.json", headers=OPERATOR_HEADERS).get_json()
    assert data["clients"] == [
        {"name": "petshow-secret-client-name", "weight": 2, "queued": 3, "inFlight": 0, "maxQueued": 10_000, "maxInFlight": 3}
    ]
    page = app.test_client().get("/ops", headers=OPERATOR_HEADERS).get_data(as_text=True)
    assert 'data-client="petshow-secret-client-name"' in page

    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert "petshow-secret-client-name" not in text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("convhub_client_queued", (("client", str(cid)),))] == 3
    assert samples[("convhub_client_in_flight", (("client", str(cid)),))] == 0


def test_metrics_client_names_when_the_operator_enables_them(make_runtime):
    rt = make_runtime(metrics_client_names=True)
    with rt.db.session() as s:
        cid = admin.add_client(s, rt.now(), "named-client", "x").id
    add_factory(rt)
    submit_job(rt, cid)
    text = create_app(rt).test_client().get("/metrics").get_data(as_text=True)
    assert 'convhub_client_queued{client="named-client"} 1.0' in text
