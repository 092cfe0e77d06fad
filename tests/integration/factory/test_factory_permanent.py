"""The reference factory's permanent failures (the document itself is bad) and ODF text-web
documents converted with Writer, against real LibreOffice."""

from __future__ import annotations

import base64
import io
import zipfile

import pytest

from app.domain.matching import doctype_of
from app.factory.converters import LibreOfficeConverter
from app.factory.converters.job import TEXT_WEB_MIMETYPE, as_writer_text
from app.factory.errors import ConversionError, DocumentRejected
from tests.factorykit import pdf_pages

TEXT = "application/vnd.oasis.opendocument.text"


def as_text_web(odt: bytes) -> bytes:
    """The same document packaged as ODF text-web (.oth), as Writer/Web saves it."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(odt)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        dst.writestr(zipfile.ZipInfo("mimetype"), TEXT_WEB_MIMETYPE, compress_type=zipfile.ZIP_STORED)
        for info in src.infolist():
            if info.filename == "mimetype":
                continue
            body = src.read(info.filename)
            if info.filename == "META-INF/manifest.xml":
                body = body.replace(f'"{TEXT}"'.encode(), f'"{TEXT_WEB_MIMETYPE}"'.encode())
            dst.writestr(info, body)
    return out.getvalue()


def job(doc: bytes, doctype: str = "odt", fmt: str = "pdf") -> dict:
    return {
        "job": "g", "application": "LibreOffice Writer", "version": "x", "doctype": doctype, "format": fmt,
        "pageStart": 0, "pageEnd": 0, "filename": "doc.oth", "document": base64.b64encode(doc).decode("ascii"),
    }


def test_oth_uploads_are_odt_documents() -> None:
    assert doctype_of("page.oth") == "odt" and doctype_of("PAGE.OTH") == "odt"
    assert doctype_of("page.html") is None


def test_as_writer_text_relabels_only_text_web(odf_docs) -> None:
    web = as_text_web(odf_docs["odt"])
    with zipfile.ZipFile(io.BytesIO(web)) as zf:
        assert zf.read("mimetype").decode() == TEXT_WEB_MIMETYPE
    text = as_writer_text(web)
    with zipfile.ZipFile(io.BytesIO(text)) as zf:
        assert zf.infolist()[0].filename == "mimetype" and zf.infolist()[0].compress_type == zipfile.ZIP_STORED
        assert zf.read("mimetype").decode() == TEXT
        assert TEXT_WEB_MIMETYPE.encode() not in zf.read("META-INF/manifest.xml")
    assert as_writer_text(odf_docs["odt"]) == odf_docs["odt"]


def test_unsupported_or_broken_documents_are_permanent(odf_docs) -> None:
    from app.factory.converters.job import check_odf, parse_job

    with pytest.raises(DocumentRejected, match="not an ODF package"):
        check_odf(b"plain text, not a zip", "odt")
    with pytest.raises(DocumentRejected, match="not odt"):
        check_odf(odf_docs["ods"], "odt")
    with pytest.raises(DocumentRejected, match="unsupported doctype"):
        parse_job({**job(odf_docs["odt"]), "doctype": "doc"})
    # A bad page range is the job's, not the document's: not permanent.
    with pytest.raises(ConversionError) as err:
        parse_job({**job(odf_docs["odt"]), "pageStart": 3, "pageEnd": 2})
    assert not err.value.permanent


@pytest.mark.libreoffice
@pytest.mark.usefixtures("libreoffice_required")
def test_text_web_converts_with_writer(lo_pool, odf_docs) -> None:
    conv = LibreOfficeConverter(lo_pool, timeout=60)
    fmt, data = conv.convert(job(as_text_web(odf_docs["odt"])))
    assert fmt == "pdf" and data.startswith(b"%PDF") and pdf_pages(data) == pdf_pages(conv.convert(job(odf_docs["odt"]))[1])
    fmt, data = conv.convert(job(as_text_web(odf_docs["odt"]), fmt="odf"))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert fmt == "odf" and zf.read("mimetype").decode() == TEXT  # re-saved by Writer as a text document
