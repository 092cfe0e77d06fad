"""`convhub jobs submit` and SOAP contentConvert queue through the one submit service: the same
"an enabled registered factory serves it" rule, refused with the same messages."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.cli import main
from app.db.migrate import upgrade
from app.db.models import Content, Job
from app.domain.errors import BadArgument, NotServed
from app.services import submission
from tests.conftest import add_client, add_factory


def _submit(rt, client: int, application: str = "LibreOffice Writer", version: str = "7.4", fmt: str = "pdf", filename: str = "doc.odt"):  # type: ignore[no-untyped-def]
    with rt.db.session() as s:
        content = submission.upload(s, rt.now(), client_id=client, filename=filename, parts=b"PK doc", max_bytes=100)
        return submission.submit(
            s, rt.now(), rt.mirror, client_id=client, content=content, application=application, version=version, fmt=fmt
        ).id


def _rows(rt) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with rt.db.read_session() as s:
        return s.scalar(select(func.count()).select_from(Job)), s.scalar(select(func.count()).select_from(Content))


@pytest.mark.parametrize(
    ("application", "version", "filename", "fmt", "message"),
    [
        ("Gnumeric", "1.12", "doc.odt", "pdf", "no registered factory serves 'Gnumeric' version '1.12'"),
        ("", "", "doc.odt", "pdf", "no registered factory serves '' version ''"),
        ("LibreOffice Writer", "7.4", "sheet.ods", "pdf", "LibreOffice Writer 7.4 does not convert ods documents"),
        ("LibreOffice Writer", "7.4", "doc.odt", "doc", "LibreOffice Writer 7.4 does not produce format 'doc'"),
    ],
)
def test_submit_refuses_what_no_registered_factory_serves(runtime, application, version, filename, fmt, message):  # type: ignore[no-untyped-def]
    rt = runtime
    client = add_client(rt)
    add_factory(rt, workers=("LibreOffice Writer|7.4|odt|pdf",))
    with pytest.raises(NotServed, match=f"^{message}$") as refused:
        _submit(rt, client, application, version, fmt, filename)
    assert isinstance(refused.value, BadArgument)  # SOAP status 599, as before
    assert _rows(rt) == (0, 0)  # the upload of the refused submission rolled back with it
    assert _submit(rt, client) > 0


def test_cli_submit_applies_the_same_rule(tmp_path, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    db_url = f"sqlite:///{tmp_path / 'convhub.db'}"
    upgrade(db_url)
    for key, value in {
        "CONVHUB_DATA_DIR": str(tmp_path / "var"),
        "CONVHUB_DATABASE_URL": db_url,
        "CONVHUB_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
    }.items():
        monkeypatch.setenv(key, value)
    doc = tmp_path / "doc.odt"
    doc.write_bytes(b"PK\x03\x04 odt")
    assert main(["clients", "add", "petshow", "--secret", "a-long-enough-secret"]) == 0
    argv = ["jobs", "submit", str(doc), "--client", "petshow", "--application", "LibreOffice Writer", "--version", "7.4"]
    capsys.readouterr()
    assert main(argv) == 1
    assert capsys.readouterr().err == "convhub: no registered factory serves 'LibreOffice Writer' version '7.4'\n"
    assert main(["factories", "add", "f1", "--secret", "factory-secret-1", "--worker", "LibreOffice Writer|7.4|odt|pdf"]) == 0
    assert main(argv) == 0
    assert " QUEUED on convert.libreoffice-writer.7-4" in capsys.readouterr().out


def test_cli_cache_cancel_and_quarantine_commands(tmp_path, monkeypatch, capsys):  # type: ignore[no-untyped-def]
    import hashlib

    from app.config import load_settings
    from app.runtime import build_runtime
    from app.services import quarantine
    from app.services.ports import NullNotifier

    db_url = f"sqlite:///{tmp_path / 'convhub.db'}"
    upgrade(db_url)
    for key, value in {
        "CONVHUB_DATA_DIR": str(tmp_path / "var"),
        "CONVHUB_DATABASE_URL": db_url,
        "CONVHUB_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'broker.db'}",
    }.items():
        monkeypatch.setenv(key, value)
    doc = tmp_path / "doc.odt"
    doc.write_bytes(b"PK\x03\x04 odt")
    assert main(["clients", "add", "petshow", "--secret", "a-long-enough-secret"]) == 0
    assert main(["factories", "add", "f1", "--secret", "factory-secret-1", "--worker", "LibreOffice Writer|7.4|odt|pdf"]) == 0
    argv = ["jobs", "submit", str(doc), "--client", "petshow", "--application", "LibreOffice Writer", "--version", "7.4"]
    capsys.readouterr()
    assert main(argv) == 0
    assert "job 1 " in capsys.readouterr().out
    assert main(argv) == 0
    assert "QUEUED, following job 1" in capsys.readouterr().out
    assert main([*argv, "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("job 3 (") and " QUEUED on convert.libreoffice-writer.7-4" in out

    assert main(["jobs", "cancel", "3"]) == 0
    assert "job 3 cancelled" in capsys.readouterr().out
    assert main(["jobs", "cancel", "3"]) == 1
    assert capsys.readouterr().err == "convhub: no job '3'\n"  # removed: as by delete

    sha = hashlib.sha256(doc.read_bytes()).hexdigest()
    rt = build_runtime(load_settings(), broker=False)
    try:
        with rt.db.session() as s:
            quarantine.quarantine(s, rt.now(), NullNotifier(), sha, reason="hung (on 2 factories)", factories=["f1", "f2"])
    finally:
        rt.close()
    assert main(["content", "quarantined"]) == 0
    out = capsys.readouterr().out
    assert sha in out and "f1,f2" in out and "hung (on 2 factories)" in out
    assert main(argv) == 1
    assert "quarantined" in capsys.readouterr().err
    assert main(["content", "release", sha]) == 0
    assert f"content {sha} released" in capsys.readouterr().out
    assert main(["content", "release", sha]) == 1
    assert main(["content", "quarantined"]) == 0
    assert sha not in capsys.readouterr().out
    assert main([*argv, "--no-cache"]) == 0
