"""The all-in-one's local factory, server side: its secret file (created once, 0600, reused), its
idempotent registration (secret and worker list brought up to date in place, the operator's
disabled flag kept), the banner's target lines, and `detect` without starting anything."""

from __future__ import annotations

import stat

import pytest

from app import local_factory
from app.domain.credentials import verify_secret
from app.domain.matching import WorkerSpec
from app.services import admin

WRITER = WorkerSpec("LibreOffice Writer", "7.4", frozenset({"odt"}), frozenset({"pdf", "png", "odf"}))
CALC = WorkerSpec("LibreOffice Calc", "7.4", frozenset({"ods"}), frozenset({"pdf", "png", "odf"}))
ABIWORD = WorkerSpec("AbiWord", "3.0", frozenset({"odt"}), frozenset({"pdf", "png", "odf"}))


def test_secret_is_created_once_0600_and_reused(tmp_path):
    data = tmp_path / "var"
    first = local_factory.load_or_create_secret(data)
    path = data / local_factory.SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and len(first) >= 20
    assert local_factory.load_or_create_secret(data) == first
    path.chmod(0o644)  # loosened by hand: tightened again, content kept
    assert local_factory.load_or_create_secret(data) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("")
    with pytest.raises(local_factory.LocalFactoryError, match="is empty"):
        local_factory.load_or_create_secret(data)


def test_registration_is_idempotent_and_updates_in_place(make_runtime):
    rt = make_runtime()
    assert local_factory.register(rt, "local", "secret-one-0123456789", [WRITER, CALC]) is True
    assert local_factory.register(rt, "local", "secret-one-0123456789", [CALC, WRITER]) is False
    with rt.db.read_session() as s:
        (row,) = [r for r in admin.list_factories(s) if r["name"] == "local"]
        first_id = admin.factory_by_name(s, "local").id
    assert row["workers"].count("LibreOffice") == 2

    # The operator disabled it; a new worker list and a new secret are taken, the flag is kept.
    with rt.db.session() as s:
        admin.set_factory_disabled(s, "local", True)
    assert local_factory.register(rt, "local", "secret-two-0123456789", [WRITER, ABIWORD]) is True
    with rt.db.read_session() as s:
        f = admin.factory_by_name(s, "local")
        assert f.id == first_id and f.disabled
        assert sorted((w.application, w.version, w.doctypes, w.formats) for w in f.workers) == [
            ("AbiWord", "3.0", "odt", "odf,pdf,png"),
            ("LibreOffice Writer", "7.4", "odt", "odf,pdf,png"),
        ]
        assert verify_secret("secret-two-0123456789", f.secret_hash)
        assert not verify_secret("secret-one-0123456789", f.secret_hash)


def test_detect_and_banner_lines():
    assert local_factory.detect("off") is None
    with pytest.raises(local_factory.LocalFactoryError, match="auto, on, off"):
        local_factory.detect("sometimes")
    assert local_factory.describe([WRITER, ABIWORD]) == [
        "AbiWord 3.0: odt -> pdf, png, odf",
        "LibreOffice Writer 7.4: odt -> pdf, png, odf",
    ]


@pytest.mark.parametrize(
    "host, url",
    [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("0.0.0.0", "http://127.0.0.1:8080"),
        ("::", "http://[::1]:8080"),
        ("::1", "http://[::1]:8080"),
        ("localhost", "http://localhost:8080"),
    ],
)
def test_server_url(host, url):
    assert local_factory.server_url(host, 8080) == url
