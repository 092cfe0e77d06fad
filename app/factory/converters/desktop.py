"""AbiWord and Gnumeric as built-in backends: the application exports the whole document to PDF
(or re-saves it as ODF); poppler cuts the page range (``pdfseparate`` + ``pdfunite``) and rasterises
PNG (``pdftoppm``), so both serve pdf with page ranges, png and odf like the LibreOffice backend.

    abiword_converter()   # -> DesktopConverter("AbiWord", "3.0", odt) or None when not installed
    gnumeric_converter()  # -> DesktopConverter("Gnumeric", "1.12", ods) or None

Versions are reported as major.minor, the way the LibreOffice backend reports its own
("3.0" for AbiWord 3.0.5, "1.12" for Gnumeric 1.12.55).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConversionError
from .base import DEFAULT_TIMEOUT, FORMATS, Converter, WorkerSpec, worker_spec
from .command import run_command
from .job import check_odf, parse_job
from .libreoffice import DEFAULT_PNG_DPI

_MAJOR_MINOR = re.compile(r"(?<![\d.])(\d+)\.(\d+)(?:\.\d+)*")


def major_minor(text: str) -> str | None:
    """The first version number in a tool's ``--version`` output as major.minor
    ("3.0.5" -> "3.0", "ssconvert version '1.12.55'" -> "1.12"); None when there is none."""
    m = _MAJOR_MINOR.search(text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def tool_version(argv: Sequence[str], timeout: float = 30.0) -> str | None:
    """major.minor from running ``argv`` (e.g. ``abiword --version``); None when it cannot run."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    return major_minor(proc.stdout + "\n" + proc.stderr)


class DesktopConverter(Converter):
    """One application, one doctype, formats pdf/png/odf, driven by two command templates.

    ``pdf_command`` and ``odf_command`` are argv lists whose items may contain ``{input}`` and
    ``{output}``; the values are put into single arguments (no shell).
    """

    def __init__(
        self,
        *,
        application: str,
        version: str,
        doctype: str,
        pdf_command: Sequence[str],
        odf_command: Sequence[str],
        timeout: float = DEFAULT_TIMEOUT,
        png_dpi: int = DEFAULT_PNG_DPI,
        workdir: str | None = None,
        env: Mapping[str, str] | None = None,
    ):
        self.spec = worker_spec(application, version, (doctype,), FORMATS)
        self.doctype = doctype
        self.pdf_command = list(pdf_command)
        self.odf_command = list(odf_command)
        self.timeout = timeout
        self.png_dpi = png_dpi
        self.workdir = workdir
        self.env = dict(env or {})

    def workers(self) -> list[WorkerSpec]:
        return [self.spec]

    def convert(
        self,
        job: Mapping[str, Any],
        deadline_seconds: float | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, bytes]:
        spec = parse_job(job)
        app = self.spec.application
        if spec.doctype != self.doctype:
            raise ConversionError(f"{app} does not read {spec.doctype}")
        check_odf(spec.document, spec.doctype)
        timeout = deadline_seconds if deadline_seconds is not None else self.timeout
        deadline = time.monotonic() + timeout

        def left() -> float:
            return max(deadline - time.monotonic(), 0.01)

        with tempfile.TemporaryDirectory(prefix="job-", dir=self.workdir) as tmp:
            src = Path(tmp) / f"document.{spec.doctype}"
            src.write_bytes(spec.document)
            if spec.format == "odf":
                out = Path(tmp) / f"result.{spec.doctype}"
                self._run(self.odf_command, src, out, left(), cancel)
                return "odf", out.read_bytes()
            pdf = Path(tmp) / "document.pdf"
            self._run(self.pdf_command, src, pdf, left(), cancel)
            pages = self._page_count(pdf, left(), cancel)
            if spec.first_page > pages:
                raise ConversionError(f"page {spec.first_page} is past the end of the document ({pages} pages)")
            if spec.format == "png":
                return "png", self._rasterise(pdf, spec.first_page, left(), cancel)
            if spec.whole_document:
                return "pdf", pdf.read_bytes()
            last = min(spec.last_page or pages, pages)
            return "pdf", self._cut(pdf, spec.first_page, last, left, cancel)

    # ------------------------------------------------------------ steps

    def _run(self, template: Sequence[str], src: Path, out: Path, timeout: float, cancel: threading.Event | None) -> None:
        values = {"input": str(src), "output": str(out), "outdir": str(out.parent)}
        argv = [arg.format_map(values) for arg in template]
        run_command(argv, timeout=timeout, cancel=cancel, cwd=out.parent, env=self.env or None, what=argv[0])
        if not out.is_file() or out.stat().st_size == 0:
            raise ConversionError(f"{self.spec.application} produced no output")

    def _page_count(self, pdf: Path, timeout: float, cancel: threading.Event | None) -> int:
        # pdfinfo writes to stdout, which run_command discards: read it here, under the same timeout.
        try:
            proc = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, timeout=timeout, check=False,
                                  stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ConversionError("pdfinfo did not finish in time") from None
        except OSError as exc:
            raise ConversionError(f"cannot run pdfinfo: {exc.strerror or exc}") from None
        m = re.search(r"^Pages:\s+(\d+)", proc.stdout, re.M)
        if proc.returncode != 0 or not m:
            raise ConversionError(f"{self.spec.application} wrote a PDF that pdfinfo cannot read")
        return int(m.group(1))

    def _rasterise(self, pdf: Path, page: int, timeout: float, cancel: threading.Event | None) -> bytes:
        prefix = pdf.with_name("page")
        run_command(
            ["pdftoppm", "-png", "-r", str(self.png_dpi), "-f", str(page), "-l", str(page), "-singlefile", str(pdf), str(prefix)],
            timeout=timeout,
            cancel=cancel,
            what="pdftoppm",
        )
        png = prefix.with_suffix(".png")
        if not png.is_file():
            raise ConversionError("pdftoppm produced no image")
        return png.read_bytes()

    def _cut(self, pdf: Path, first: int, last: int, left: Callable[[], float], cancel: threading.Event | None) -> bytes:
        pages_dir = pdf.with_name("pages")
        pages_dir.mkdir()
        run_command(
            ["pdfseparate", "-f", str(first), "-l", str(last), str(pdf), str(pages_dir / "p-%d.pdf")],
            timeout=left(),
            cancel=cancel,
            what="pdfseparate",
        )
        parts = [pages_dir / f"p-{n}.pdf" for n in range(first, last + 1)]
        if not all(p.is_file() for p in parts):
            raise ConversionError("pdfseparate produced fewer pages than asked")
        if len(parts) == 1:
            return parts[0].read_bytes()
        out = pdf.with_name("range.pdf")
        run_command(["pdfunite", *map(str, parts), str(out)], timeout=left(), cancel=cancel, what="pdfunite")
        return out.read_bytes()


def abiword_converter(
    *, abiword: str = "abiword", timeout: float = DEFAULT_TIMEOUT, png_dpi: int = DEFAULT_PNG_DPI, workdir: str | None = None
) -> DesktopConverter | None:
    """AbiWord for odt (``abiword --to=pdf``), or None when it is not installed."""
    version = tool_version([abiword, "--version"])
    if version is None:
        return None
    return DesktopConverter(
        application="AbiWord",
        version=version,
        doctype="odt",
        pdf_command=[abiword, "--to=pdf", "-o", "{output}", "{input}"],
        odf_command=[abiword, "--to=odt", "-o", "{output}", "{input}"],
        timeout=timeout,
        png_dpi=png_dpi,
        workdir=workdir,
    )


def gnumeric_converter(
    *, ssconvert: str = "ssconvert", timeout: float = DEFAULT_TIMEOUT, png_dpi: int = DEFAULT_PNG_DPI, workdir: str | None = None
) -> DesktopConverter | None:
    """Gnumeric for ods (``ssconvert``), or None when it is not installed."""
    version = tool_version([ssconvert, "--version"])
    if version is None:
        return None
    return DesktopConverter(
        application="Gnumeric",
        version=version,
        doctype="ods",
        pdf_command=[ssconvert, "--export-type=Gnumeric_pdf:pdf_assistant", "{input}", "{output}"],
        odf_command=[ssconvert, "--export-type=Gnumeric_OpenCalc:odf", "{input}", "{output}"],
        timeout=timeout,
        png_dpi=png_dpi,
        workdir=workdir,
    )
