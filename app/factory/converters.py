"""Converters: turn one job (the ``jobs.poll`` struct) into ``(format, bytes)``.

Independent of the poll loop, so a push-style (Celery) factory can call the same objects:

    conv = LibreOfficeConverter(OfficePool(2))
    conv.workers()                   # -> [WorkerSpec("LibreOffice Writer", "7.4", ("odt",), ...), ...]
    fmt, data = conv.convert(job, deadline_seconds=120)   # raises ConversionError / ConversionTimeout
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import glob
import io
import logging
import os
import re
import shlex
import signal
import subprocess
import tempfile
import threading
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, ConversionCancelled, ConversionError, ConversionTimeout
from .office import OfficePool

log = logging.getLogger("convhub.factory.converters")

DOCTYPES = ("odt", "ods", "odp")
FORMATS = ("pdf", "png", "odf")
DEFAULT_FORMAT = "pdf"  # what "the factory decides" when a job's format is empty
DEFAULT_TIMEOUT = 120.0
DEFAULT_PNG_DPI = 96

ODF_MIMETYPES = {
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "odp": "application/vnd.oasis.opendocument.presentation",
}


@dataclass(frozen=True)
class WorkerSpec:
    """An (application, version) this factory renders, with the doctypes and formats it supports."""

    application: str
    version: str
    doctypes: tuple[str, ...]
    formats: tuple[str, ...]

    def as_dict(self) -> dict:
        return {
            "application": self.application,
            "version": self.version,
            "doctypes": list(self.doctypes),
            "formats": list(self.formats),
        }


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


def parse_job(job: Mapping) -> Job:
    """Validate a poll struct. ``document`` may be base64 text (as polled), bytes or an xmlrpc Binary."""
    doctype = str(job.get("doctype") or "").lower()
    if doctype not in DOCTYPES:
        raise ConversionError(f"unsupported doctype {doctype!r}")
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


def _page(job: Mapping, key: str) -> int:
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


def check_odf(data: bytes, doctype: str) -> None:
    """Refuse anything that is not an ODF package of the job's doctype, before a renderer sees it."""
    expected = ODF_MIMETYPES[doctype]
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            mimetype = zf.read("mimetype").decode("ascii", "replace").strip()
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        raise ConversionError(f"the document is not an ODF package ({doctype})") from None
    # Templates and masters (…text-template, …text-master) load the same way.
    if not mimetype.startswith(expected):
        raise ConversionError(f"the document is {mimetype or 'unknown'}, not {doctype}")


class Converter:
    """Interface of every backend."""

    def workers(self) -> list[WorkerSpec]:
        raise NotImplementedError

    def convert(
        self,
        job: Mapping,
        deadline_seconds: float | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, bytes]:
        """Convert one job; returns (format, data). ``cancel`` set from another thread abandons it."""
        raise NotImplementedError

    def start(self) -> None:
        """Warm up (start renderers) before the first job; optional."""

    def close(self) -> None:
        """Release processes and temporary files."""

    def __enter__(self) -> Converter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- LibreOffice -------------------------------------------------------------------------------

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
    m = re.search(r"LibreOffice\s+(\d+)\.(\d+)", out)
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
            WorkerSpec(f"{self.application_prefix} {name}", self.version, (doctype,), FORMATS)
            for doctype, (name, *_rest) in _LO_DOCS.items()
        ]

    def start(self) -> None:
        self.pool.start()

    def close(self) -> None:
        self.pool.close()

    def convert(
        self,
        job: Mapping,
        deadline_seconds: float | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, bytes]:
        spec = parse_job(job)
        check_odf(spec.document, spec.doctype)
        timeout = deadline_seconds if deadline_seconds is not None else self.timeout
        deadline = time.monotonic() + timeout
        _name, service, pdf_filter, odf_filter = _LO_DOCS[spec.doctype]
        with tempfile.TemporaryDirectory(prefix="job-", dir=self.pool.workdir) as tmp:
            src = Path(tmp) / f"document.{spec.doctype}"
            src.write_bytes(spec.document)
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
                raise ConversionError(self._explain(reply, spec, page_range))
            if not out.is_file() or out.stat().st_size == 0:
                raise ConversionError("LibreOffice produced no output")
            if spec.format == "png":
                return "png", self._rasterise(out, deadline, cancel)
            return spec.format, out.read_bytes()

    def _explain(self, reply: dict, spec: Job, page_range: str) -> str:
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


# -- generic command ---------------------------------------------------------------------------


def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    cancel: threading.Event | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    what: str | None = None,
) -> None:
    """Run argv in its own process group; kill the whole group on timeout or cancel."""
    what = what or os.path.basename(argv[0])
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise ConversionError(f"cannot run {what}: {exc.strerror or exc}") from None
    # stderr is drained by a thread so a chatty tool cannot fill the pipe and stall.
    chunks: list[bytes] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: chunks.append(proc.stderr.read()), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                proc.wait(timeout=min(0.2, max(deadline - time.monotonic(), 0)))
                break
            except subprocess.TimeoutExpired:
                pass
            if cancel is not None and cancel.is_set():
                raise ConversionCancelled(f"{what} cancelled")
            if time.monotonic() >= deadline:
                raise ConversionTimeout(f"{what} did not finish within {timeout:g} s")
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(5)
        proc.stderr.close()
    if proc.returncode != 0:
        lines = b"".join(chunks).decode("utf-8", "replace").strip().splitlines()
        tail = lines[-1].strip() if lines else ""
        raise ConversionError(f"{what} exited with status {proc.returncode}" + (f": {tail}" if tail else ""))


class CommandConverter(Converter):
    """One worker backed by an external command, configured from an INI section (see config.py).

    Templates are split like a shell command line first and placeholders are then filled in each
    argument, so no value is ever parsed by a shell. Placeholders: {input} {output} {outdir}
    {format} {ext} {doctype} {job} {pageStart} {pageEnd}. ``{ext}`` is pdf, png, or the doctype
    for odf. ``output`` names the file to upload (default ``{output}`` = ``{outdir}/result.{ext}``)
    and may be a glob.
    """

    def __init__(
        self,
        name: str,
        *,
        application: str,
        version: str,
        doctypes: Sequence[str],
        formats: Sequence[str],
        command: str,
        format_commands: Mapping[str, str] | None = None,
        output: str = "{output}",
        timeout: float = DEFAULT_TIMEOUT,
        page_ranges: bool = False,
        default_format: str = DEFAULT_FORMAT,
        env: Mapping[str, str] | None = None,
        workdir: str | os.PathLike[str] | None = None,
    ):
        bad = [d for d in doctypes if d not in DOCTYPES] + [f for f in formats if f not in FORMATS]
        if bad:
            raise ConfigError(f"[command:{name}] unknown doctype/format {', '.join(bad)}")
        if not doctypes or not formats:
            raise ConfigError(f"[command:{name}] needs doctypes and formats")
        if default_format not in formats:
            raise ConfigError(f"[command:{name}] default_format {default_format} is not in formats")
        self.name = name
        self.spec = WorkerSpec(application, version, tuple(doctypes), tuple(formats))
        self.commands = {f: (format_commands or {}).get(f, command) for f in formats}
        for fmt, template in self.commands.items():
            if not template:
                raise ConfigError(f"[command:{name}] has no command for {fmt}")
            try:
                shlex.split(template)
            except ValueError as exc:
                raise ConfigError(f"[command:{name}] command: {exc}") from None
        self.output = output
        self.timeout = timeout
        self.page_ranges = page_ranges
        self.default_format = default_format
        self.env = dict(env or {})
        self.workdir = workdir

    def workers(self) -> list[WorkerSpec]:
        return [self.spec]

    def convert(
        self,
        job: Mapping,
        deadline_seconds: float | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, bytes]:
        spec = parse_job({**job, "format": job.get("format") or self.default_format})
        if spec.doctype not in self.spec.doctypes:
            raise ConversionError(f"{self.spec.application} does not read {spec.doctype}")
        if spec.format not in self.spec.formats:
            raise ConversionError(f"{self.spec.application} does not write {spec.format}")
        if not spec.whole_document and not self.page_ranges:
            raise ConversionError(f"{self.spec.application} cannot render a page range")
        check_odf(spec.document, spec.doctype)
        timeout = deadline_seconds if deadline_seconds is not None else self.timeout
        with tempfile.TemporaryDirectory(prefix="job-", dir=self.workdir) as tmp:
            src = Path(tmp) / f"document.{spec.doctype}"
            src.write_bytes(spec.document)
            outdir = Path(tmp) / "out"
            outdir.mkdir()
            ext = spec.doctype if spec.format == "odf" else spec.format
            values = {
                "input": str(src),
                "outdir": str(outdir),
                "output": str(outdir / f"result.{ext}"),
                "format": spec.format,
                "ext": ext,
                "doctype": spec.doctype,
                "job": spec.job_id,
                "pageStart": str(spec.first_page),
                "pageEnd": str(spec.page_end),
            }
            argv = [_fill(arg, values, self.name) for arg in shlex.split(self.commands[spec.format])]
            run_command(argv, timeout=timeout, cancel=cancel, cwd=tmp, env=self.env or None)
            result = self._find_output(os.path.join(tmp, _fill(self.output, values, self.name)))
            return spec.format, result.read_bytes()

    def _find_output(self, pattern: str) -> Path:
        # A relative pattern is taken inside the job's directory (the command's cwd).
        candidates = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        for candidate in candidates:
            path = Path(candidate)
            if path.is_file() and path.stat().st_size > 0:
                return path
        raise ConversionError(f"{self.spec.application} produced no output")


def _fill(template: str, values: Mapping[str, str], name: str) -> str:
    try:
        return template.format_map(values)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"[command:{name}] bad placeholder in {template!r}: {exc}") from None


class CompositeConverter(Converter):
    """Routes each job to the backend serving its (application, version)."""

    def __init__(self, backends: Sequence[Converter]):
        self.backends = list(backends)
        self._routes: dict[tuple[str, str], Converter] = {}
        for backend in self.backends:
            for w in backend.workers():
                key = (w.application, w.version)
                if key in self._routes:
                    raise ConfigError(f"two backends serve {w.application} {w.version}")
                self._routes[key] = backend

    def workers(self) -> list[WorkerSpec]:
        return [w for b in self.backends for w in b.workers()]

    def backend_for(self, job: Mapping) -> Converter:
        key = (str(job.get("application") or ""), str(job.get("version") or ""))
        try:
            return self._routes[key]
        except KeyError:
            raise ConversionError(f"this factory has no worker for {key[0]} {key[1]}".strip()) from None

    def convert(
        self,
        job: Mapping,
        deadline_seconds: float | None = None,
        cancel: threading.Event | None = None,
    ) -> tuple[str, bytes]:
        return self.backend_for(job).convert(job, deadline_seconds, cancel)

    def start(self) -> None:
        for b in self.backends:
            b.start()

    def close(self) -> None:
        for b in self.backends:
            b.close()
