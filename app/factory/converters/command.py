"""External commands: ``run_command`` (process group, timeout, cancel) and the generic
``CommandConverter`` configured from an INI section (see config.py)."""

from __future__ import annotations

import contextlib
import glob
import os
import shlex
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ConversionCancelled, ConversionError, ConversionTimeout
from .base import DEFAULT_FORMAT, DEFAULT_TIMEOUT, DOCTYPES, FORMATS, Converter, WorkerSpec, worker_spec
from .job import check_odf, parse_job


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
    stderr = proc.stderr
    assert stderr is not None
    reader = threading.Thread(target=lambda: chunks.append(stderr.read()), daemon=True)
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
        stderr.close()
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
        self.spec = worker_spec(application, version, doctypes, formats)
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
        job: Mapping[str, Any],
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
