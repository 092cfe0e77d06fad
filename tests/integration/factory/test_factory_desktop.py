"""The built-in AbiWord and Gnumeric backends with the real programs (Debian's abiword, gnumeric):
pdf (whole and a page range), png of the range's first page, odf re-saved; and how the factory's
configuration turns them on. Skipped where the program is missing, failed when CI=true."""

from __future__ import annotations

import base64
import io
import shutil
import zipfile

import pytest

from app.factory.config import build_converter, load_config
from app.factory.converters import ODF_MIMETYPES, abiword_converter, gnumeric_converter, major_minor
from app.factory.errors import ConfigError, ConversionError
from tests.factorykit import pdf_pages, png_size
from tests.integration.factory.conftest import IN_CI

pytestmark = pytest.mark.libreoffice


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        msg = f"{binary} is not installed (apt-get install abiword gnumeric)"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)


def _job(doc: bytes, doctype: str, app: str, version: str, fmt: str, start: int = 0, end: int = 0) -> dict:
    return {
        "job": "guid-desktop",
        "application": app,
        "version": version,
        "doctype": doctype,
        "format": fmt,
        "pageStart": start,
        "pageEnd": end,
        "document": base64.b64encode(doc).decode(),
    }


@pytest.mark.parametrize(
    "binary, make, doctype, app",
    [("abiword", abiword_converter, "odt", "AbiWord"), ("ssconvert", gnumeric_converter, "ods", "Gnumeric")],
)
def test_builtin_backend_converts_pdf_ranges_png_and_odf(odf_docs, tmp_path, binary, make, doctype, app):
    _need(binary)
    conv = make(workdir=str(tmp_path))
    assert conv is not None
    (worker,) = conv.workers()
    assert worker.application == app and worker.doctypes == {doctype} and worker.formats == {"pdf", "png", "odf"}
    assert worker.version == major_minor(worker.version) and worker.version.count(".") == 1
    doc = odf_docs[doctype]  # five pages (five sheets for ods)

    fmt, data = conv.convert(_job(doc, doctype, app, worker.version, "pdf"))
    assert fmt == "pdf" and pdf_pages(data) == 5
    fmt, data = conv.convert(_job(doc, doctype, app, worker.version, "pdf", 2, 3))
    assert fmt == "pdf" and pdf_pages(data) == 2
    fmt, data = conv.convert(_job(doc, doctype, app, worker.version, "pdf", 4, 0))
    assert pdf_pages(data) == 2  # 4 to the end
    fmt, data = conv.convert(_job(doc, doctype, app, worker.version, "png", 2, 2))
    assert fmt == "png" and png_size(data)[0] > 100
    fmt, data = conv.convert(_job(doc, doctype, app, worker.version, "odf"))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert zf.read("mimetype").decode() == ODF_MIMETYPES[doctype]
    with pytest.raises(ConversionError, match="past the end"):
        conv.convert(_job(doc, doctype, app, worker.version, "pdf", 9, 9))
    other = "ods" if doctype == "odt" else "odt"
    with pytest.raises(ConversionError, match=f"does not read {other}"):
        conv.convert(_job(odf_docs[other], other, app, worker.version, "pdf"))


def test_the_factory_serves_abiword_and_gnumeric_when_installed(tmp_path, libreoffice_required):
    _need("abiword")
    _need("ssconvert")
    apps = {w.application for w in build_converter(load_config(None)).workers()}
    assert {"LibreOffice Writer", "LibreOffice Calc", "LibreOffice Impress", "AbiWord", "Gnumeric"} <= apps

    off = tmp_path / "off.ini"
    off.write_text("[abiword]\nenabled = no\n[gnumeric]\nenabled = off\n")
    apps = {w.application for w in build_converter(load_config(off)).workers()}
    assert "AbiWord" not in apps and "Gnumeric" not in apps and "LibreOffice Writer" in apps

    # A configuration with its own [command:...] workers is taken as complete (auto adds nothing) ...
    own = tmp_path / "own.ini"
    own.write_text("[libreoffice]\nenabled = no\n[command:copy]\napplication = Copy\nversion = 1\n"
                   "doctypes = odt\nformats = odf\ncommand = cp {input} {output}\n")
    assert [w.application for w in build_converter(load_config(own)).workers()] == ["Copy"]
    # ... unless it asks for them.
    own.write_text(own.read_text() + "[gnumeric]\nenabled = yes\n")
    assert sorted(w.application for w in build_converter(load_config(own)).workers()) == ["Copy", "Gnumeric"]


def test_builtin_section_rejects_unknown_options(tmp_path):
    bad = tmp_path / "bad.ini"
    bad.write_text("[abiword]\nenabled = auto\npath = /opt/abiword\n")
    with pytest.raises(ConfigError, match=r"\[abiword\] unknown option"):
        load_config(bad)
    bad.write_text("[gnumeric]\nenabled = maybe\n")
    with pytest.raises(ConfigError, match="enabled must be auto, yes or no"):
        load_config(bad).validate(need_server=False)
