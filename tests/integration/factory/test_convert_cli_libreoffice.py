"""`convhub convert` with the real reference factory and real LibreOffice, as in the README's first steps.

A server on a socket (the real WSGI app), the CLI in local mode on its database, and `convhub factory
run` converting the five-page ODT: `--pages 2-3` must give a two-page PDF named after the document.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.factory.converters import libreoffice_version
from tests.conftest import add_factory, close_runtime, make_settings, start_server, wait_for
from tests.factorykit import pdf_pages

pytestmark = [pytest.mark.libreoffice, pytest.mark.slow, pytest.mark.usefixtures("libreoffice_required")]

CONVHUB = [sys.executable, "-m", "app.cli"]


def test_convert_pages_2_3_to_a_two_page_pdf(odf_docs, tmp_path):
    from app.runtime import build_runtime
    from app.services import admin

    version = libreoffice_version()
    assert version
    settings = make_settings(tmp_path)
    rt = build_runtime(settings)  # the real clock: the CLI and the factory share the database's time
    server = start_server(rt)
    proc = None
    try:
        add_factory(rt, "lo", "lo-secret-0123456789", workers=(f"LibreOffice Writer|{version}|odt|pdf,png,odf",))
        (tmp_path / "five.odt").write_bytes(odf_docs["odt"])
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONVHUB_")}
        env.update(CONVHUB_DATA_DIR=str(settings.data_dir), CONVHUB_DATABASE_URL=settings.database_url,
                   CONVHUB_BROKER_URL=settings.broker_url)
        proc = subprocess.Popen(CONVHUB + ["convert", "five.odt", "--to", "pdf", "--pages", "2-3"], cwd=tmp_path,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def queued() -> bool:
            assert proc.poll() is None, proc.communicate()
            with rt.db.read_session() as s:
                return bool(admin.list_jobs(s, state=0))

        wait_for(queued, 60, "the CLI's job")
        ini = tmp_path / "factory.ini"
        ini.write_text(f"[factory]\nworkdir = {tmp_path / 'work'}\n[libreoffice]\nenabled = yes\n")
        factory = subprocess.run(
            CONVHUB + ["factory", "run", "--server", server.url, "--name", "lo", "--secret", "lo-secret-0123456789",
                       "--config", str(ini), "--concurrency", "1", "--once", "--timeout", "90"],
            env=env, capture_output=True, text=True, timeout=180,
        )
        assert factory.returncode == 0, factory.stderr
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
        close_runtime(rt)
    pdf = (tmp_path / "five.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf_pages(pdf) == 2
    assert out.decode().startswith(f"wrote {tmp_path / 'five.pdf'} ({len(pdf)} bytes, pdf, job 1)")
