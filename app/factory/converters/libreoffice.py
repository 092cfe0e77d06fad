"""The LibreOffice backend: warm soffice instances (office.py) render odt/ods/odp to pdf, png, odf."""

from __future__ import annotations

import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ConversionError, ConversionTimeout, DocumentRejected
from ..office import OfficePool
from .base import DEFAULT_TIMEOUT, FORMATS, Converter, WorkerSpec, worker_spec
from .command import run_command
from .job import Job, as_writer_text, check_odf, parse_job

DEFAULT_PNG_DPI = 96

_LO_DOCS = {
    # doctype: (component name, UNO service of the loaded model, PDF export filter, ODF filter)
    "odt": ("Writer", "com.sun.star.text.TextDocument", "writer_pdf_Export", "writer8"),
    "ods": ("Calc", "com.sun.star.sheet.SpreadsheetDocument", "calc_pdf_Export", "calc8"),
    "odp": ("Impress", "com.sun.star.presentation.PresentationDocument", "impress_pdf_Export", "impress8"),
}


def libreoffice_version(soffice: str = "soffice", timeout: float = 30.0) -> str | None:
    """major.minor from ``soffice --version``, or None when LibreOffice is not installed."""
    try:
        out = subprocess.run(
            [soffice, "--version"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_libreoffice_version(out)


def parse_libreoffice_version(text: str) -> str | None:
    """major.minor from ``soffice --version`` output: "LibreOffice 7.4.7.2 40(Build:2)" -> "7.4"
    (also "LibreOffice 24.2.0.3 ..." -> "24.2"); None when the text names no LibreOffice version."""
    m = re.search(r"LibreOffice\s+(\d+)\.(\d+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def uno_available(python: str = "/usr/bin/python3") -> bool:
    try:
        return (
            subprocess.run(
                [python, "-c", "import uno"], capture_output=True, timeout=30, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.SubprocessError):
        return False


class LibreOfficeConverter(Converter):
    """odt/ods/odp -> pdf (page range), png (first page of the range), odf (re-saved in its own type).

    PNG is the first page of the range exported to PDF by LibreOffice and rasterised by
    ``pdftoppm`` at ``png_dpi`` (96 dpi: an A4 page is 794 x 1123 pixels).
    """

    def __init__(
        self,
        pool: OfficePool,
        *,
        version: str | None = None,
        application_prefix: str = "LibreOffice",
        timeout: float = DEFAULT_TIMEOUT,
        png_dpi: int = DEFAULT_PNG_DPI,
        pdftoppm: str = "pdftoppm",
        soffice: str | None = None,
    ):
        self.pool = pool
        self.timeout = timeout
        self.png_dpi = png_dpi
        self.pdftoppm = pdftoppm
        if version is None:
            version = libreoffice_version(soffice or pool.instances[0].soffice)
            if version is None:
                raise ConfigError("LibreOffice (soffice) is not installed or does not report a version")
        self.version = version
        self.application_prefix = application_prefix

    def workers(self) -> list[WorkerSpec]:
        return [
            worker_spec(f"{self.application_prefix} {name}", self.version, (doctype,), FORMATS)
            for doctype, (name, *_rest) in _LO_DOCS.items()
        ]

    def start(self) -> None:
        self.pool.start()

    def close(self) -> None:
        self.pool.close()

    def convert(
        self,
        job: Mapping[str, Any],
        deadline_seconds: float | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, bytes]:
        spec = parse_job(job)
        check_odf(spec.document, spec.doctype)
        document = as_writer_text(spec.document) if spec.doctype == "odt" else spec.document
        timeout = deadline_seconds if deadline_seconds is not None else self.timeout
        deadline = time.monotonic() + timeout
        _name, service, pdf_filter, odf_filter = _LO_DOCS[spec.doctype]
        with tempfile.TemporaryDirectory(prefix="job-", dir=self.pool.workdir) as tmp:
            src = Path(tmp) / f"document.{spec.doctype}"
            src.write_bytes(document)
            request: dict[str, Any]
            if spec.format == "odf":
                out = Path(tmp) / f"result.{spec.doctype}"
                request = {"filter": odf_filter}
                page_range = ""
            else:
                out = Path(tmp) / "result.pdf"
                if spec.format == "png":
                    page_range = str(spec.first_page)
                elif spec.whole_document:
                    page_range = ""
                else:
                    page_range = f"{spec.first_page}-{spec.last_page or ''}"
                request = {"filter": pdf_filter}
                if page_range:
                    request["filterdata"] = {"PageRange": page_range}
            request.update(input=str(src), output=str(out), service=service)
            try:
                with self.pool.instance(timeout=max(deadline - time.monotonic(), 0.01)) as inst:
                    reply = inst.call(request, max(deadline - time.monotonic(), 0.01), cancel)
            except ConversionTimeout:
                # Report the job's limit, not what was left of it when LibreOffice got the job.
                raise ConversionTimeout(f"LibreOffice did not finish within {timeout:g} s") from None
            if not reply.get("ok"):
                # A document LibreOffice cannot load, or that loads as another kind, is permanent.
                error = DocumentRejected if reply.get("permanent") else ConversionError
                raise error(self._explain(reply, spec, page_range))
            if not out.is_file() or out.stat().st_size == 0:
                raise ConversionError("LibreOffice produced no output")
            if spec.format == "png":
                return "png", self._rasterise(out, deadline, cancel)
            return spec.format, out.read_bytes()

    def _explain(self, reply: Mapping[str, Any], spec: Job, page_range: str) -> str:
        pages = reply.get("pages")
        if page_range and isinstance(pages, int) and spec.first_page > pages:
            return f"page {spec.first_page} is past the end of the document ({pages} pages)"
        error = str(reply.get("error") or "unknown error")
        if page_range and "impl_store" in error:
            # LibreOffice writes nothing when the range selects no page; it says only "I/O error".
            return f"LibreOffice exported no page for the range {page_range} (past the end of the document?)"
        return f"LibreOffice: {error}"[:500]

    def _rasterise(self, pdf: Path, deadline: float, cancel: threading.Event | None) -> bytes:
        prefix = pdf.with_name("page")
        run_command(
            [
                self.pdftoppm,
                "-png",
                "-r",
                str(self.png_dpi),
                "-f",
                "1",
                "-l",
                "1",
                "-singlefile",
                str(pdf),
                str(prefix),
            ],
            timeout=max(deadline - time.monotonic(), 0.01),
            cancel=cancel,
            what="pdftoppm",
        )
        png = prefix.with_suffix(".png")
        if not png.is_file():
            raise ConversionError("pdftoppm produced no image")
        return png.read_bytes()
