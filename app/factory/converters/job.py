"""A poll struct read and checked for a converter: doctype, format, page range, document bytes,
and the ODF package check every backend runs before a renderer sees the document."""

from __future__ import annotations

import base64
import binascii
import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConversionError, DocumentRejected
from .base import DEFAULT_FORMAT, DOCTYPES, FORMATS

ODF_MIMETYPES = {
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
}
# ODF text-web (.oth): a Writer text document whose package says "text-web". LibreOffice would load
# it as a Writer/Web document; the converters re-label it a text document and convert it with Writer.
TEXT_WEB_MIMETYPE = "application/vnd.oasis.opendocument.text-web"


@dataclass(frozen=True)
class Job:
    """The parts of a poll struct a converter needs, validated."""

    job_id: str
    application: str
    version: str
    doctype: str
    format: str
    page_start: int
    page_end: int
    filename: str
    document: bytes

    @property
    def first_page(self) -> int:
        return max(self.page_start, 1)

    @property
    def last_page(self) -> int | None:
        return self.page_end or None

    @property
    def whole_document(self) -> bool:
        return self.first_page == 1 and self.last_page is None


def parse_job(job: Mapping[str, Any]) -> Job:
    """Validate a poll struct. ``document`` may be base64 text (as polled), bytes or an xmlrpc Binary."""
    doctype = str(job.get("doctype") or "").lower()
    if doctype not in DOCTYPES:
        raise DocumentRejected(f"unsupported doctype {doctype!r}")
    fmt = str(job.get("format") or "").lower() or DEFAULT_FORMAT
    if fmt not in FORMATS:
        raise ConversionError(f"unsupported format {fmt!r}")
    start, end = _page(job, "pageStart"), _page(job, "pageEnd")
    if end and end < max(start, 1):
        raise ConversionError(f"invalid page range {start}-{end}")
    return Job(
        job_id=str(job.get("job") or ""),
        application=str(job.get("application") or ""),
        version=str(job.get("version") or ""),
        doctype=doctype,
        format=fmt,
        page_start=start,
        page_end=end,
        filename=str(job.get("filename") or ""),
        document=_document_bytes(job.get("document")),
    )


def _page(job: Mapping[str, Any], key: str) -> int:
    value = job.get(key) or 0
    try:
        page = int(value)  # the seed's example sends pages as <string>
    except (TypeError, ValueError):
        raise ConversionError(f"{key} is not a number: {value!r}") from None
    if page < 0:
        raise ConversionError(f"{key} is negative: {page}")
    return page


def _document_bytes(doc: object) -> bytes:
    if doc is None:
        raise ConversionError("the job has no document")
    if isinstance(doc, bytes | bytearray):
        return bytes(doc)
    data = getattr(doc, "data", None)  # xmlrpc.client.Binary
    if isinstance(data, bytes):
        return data
    if isinstance(doc, str):
        try:
            # Line breaks are common in base64 text; anything else outside the alphabet is an error.
            data = base64.b64decode("".join(doc.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ConversionError("the document is not valid base64") from None
        if not data:
            raise ConversionError("the document is empty")
        return data
    raise ConversionError(f"unexpected document type {type(doc).__name__}")


def odf_mimetype(data: bytes, doctype: str) -> str:
    """The package's mimetype; DocumentRejected (permanent) when it is not an ODF package at all."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return zf.read("mimetype").decode("ascii", "replace").strip()
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        raise DocumentRejected(f"the document is not an ODF package ({doctype})") from None


def check_odf(data: bytes, doctype: str) -> None:
    """Refuse anything that is not an ODF package of the job's doctype, before a renderer sees it.
    Both refusals are permanent: no other attempt or factory can do better."""
    expected = ODF_MIMETYPES[doctype]
    mimetype = odf_mimetype(data, doctype)
    # Templates and masters (…text-template, …text-master) load the same way; so does text-web
    # once re-labelled (as_writer_text).
    if not mimetype.startswith(expected):
        raise DocumentRejected(f"the document is {mimetype or 'unknown'}, not {doctype}")


def as_writer_text(data: bytes) -> bytes:
    """An ODF text-web package re-labelled as an ODF text document (mimetype entry and manifest root),
    so LibreOffice loads it with Writer; any other package is returned unchanged."""
    if odf_mimetype(data, "odt") != TEXT_WEB_MIMETYPE:
        return data
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        # The mimetype entry comes first and is stored uncompressed (ODF 1.2, part 3, 3.3).
        dst.writestr(zipfile.ZipInfo("mimetype"), ODF_MIMETYPES["odt"], compress_type=zipfile.ZIP_STORED)
        for info in src.infolist():
            if info.filename == "mimetype":
                continue
            body = src.read(info.filename)
            if info.filename == "META-INF/manifest.xml":
                body = body.replace(TEXT_WEB_MIMETYPE.encode(), ODF_MIMETYPES["odt"].encode())
            dst.writestr(info, body)
    return out.getvalue()
