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


def _png(width: int, height: int, pixel) -> bytes:  # type: ignore[no-untyped-def]
    """A truecolour PNG drawn by `pixel(x, y) -> (r, g, b)`, with the standard library only."""
    import zlib

    rows = b"".join(b"\x00" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b"")


REPORT_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" '
    'xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" '
    'xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0" '
    'xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0" '
    'xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" office:version="1.2"'
)


def report_odt(paragraphs: int = 24) -> bytes:
    """A real ODF text of about two pages: a heading, a 4 x 3 table, an embedded PNG image and
    footnotes, the kind of document applications render differently (the comparison tests)."""
    image = _png(96, 96, lambda x, y: (255, 64 + x, 32) if (x // 12 + y // 12) % 2 else (30, 60 + y, 200))
    note = 0

    def para(i: int) -> str:
        nonlocal note
        body = (
            f"Paragraph {i}: the quick brown fox jumps over the lazy dog, and the rendering farm "
            "converts the same document with every office application it knows. "
        ) * 2
        if i % 6 == 1:
            note += 1
            body += (
                f'<text:note text:id="ftn{note}" text:note-class="footnote"><text:note-citation>{note}</text:note-citation>'
                f"<text:note-body><text:p>Footnote {note}: where this sentence came from.</text:p></text:note-body></text:note>"
            )
        return f"<text:p>{body}</text:p>"

    cells = "".join(
        "<table:table-row>"
        + "".join(f'<table:table-cell office:value-type="string"><text:p>r{r}c{c}</text:p></table:table-cell>' for c in range(1, 4))
        + "</table:table-row>"
        for r in range(1, 5)
    )
    content = (
        f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {REPORT_NS}><office:body><office:text>'
        '<text:h text:outline-level="1">Quarterly report</text:h>'
        + para(1)
        + '<table:table table:name="Figures"><table:table-column table:number-columns-repeated="3"/>'
        + cells
        + "</table:table>"
        + '<text:p><draw:frame draw:name="logo" text:anchor-type="as-char" svg:width="3cm" svg:height="3cm">'
        '<draw:image xlink:href="Pictures/logo.png" xlink:type="simple" xlink:show="embed" xlink:actuate="onLoad"/>'
        "</draw:frame></text:p>"
        + "".join(para(i) for i in range(2, paragraphs + 1))
        + "</office:text></office:body></office:document-content>"
    )
    manifest = (
        f'<?xml version="1.0" encoding="UTF-8"?><manifest:manifest {REPORT_NS}>'
        '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.text"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        '<manifest:file-entry manifest:full-path="Pictures/logo.png" manifest:media-type="image/png"/>'
        "</manifest:manifest>"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), ODF_MIMETYPES["odt"])  # first and stored, as ODF requires
        zf.writestr("META-INF/manifest.xml", manifest)
        zf.writestr("content.xml", content)
        zf.writestr("Pictures/logo.png", image)
    return buf.getvalue()
