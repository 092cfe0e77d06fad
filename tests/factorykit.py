"""Helpers of the factory tests: a minimal ODF document and checks on what converters produce."""

from __future__ import annotations

import io
import struct
import subprocess
import tempfile
import zipfile

from app.factory.converters import ODF_MIMETYPES


def tiny_odt() -> bytes:
    """The smallest ODF text the factory's ODF check accepts (it is not a renderable document)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), ODF_MIMETYPES["odt"])
        zf.writestr("content.xml", "<office:document-content/>")
    return buf.getvalue()


def pdf_pages(data: bytes) -> int:
    """The page count of a PDF, by poppler's pdfinfo."""
    with tempfile.NamedTemporaryFile(suffix=".pdf") as fh:
        fh.write(data)
        fh.flush()
        out = subprocess.run(["pdfinfo", fh.name], capture_output=True, text=True, check=True).stdout
    return int(next(line.split()[1] for line in out.splitlines() if line.startswith("Pages:")))


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG, from its IHDR chunk."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])  # type: ignore[return-value]
