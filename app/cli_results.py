"""Client commands of `convhub`: fetch results, wait for jobs, convert a file in one command.

- `convhub jobs result ID|GUID [-o FILE] [--wait]`
- `convhub jobs submit ... --wait [-o FILE]` (the options and what follows the submit)
- `convhub convert FILE --to pdf|png|odf [--pages 2-3] [-o OUT] [--application A --version V]
  [--server URL --client C --secret S]`

Against this machine's database (the settings of every other command) or, with `--server`, a server's
SOAP ContentService. Every call goes through a Backend (app/convert_backend.py). Progress lines go to
stderr and only when it is a terminal. Exit status: 0 done; 1 the job FAILED or the server refused;
2 a bad command line; 3 `--timeout` passed before the job ended.

Imports only the standard library at module level: `convhub` stays importable on a factory host.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from app.convert_backend import LOCAL_CLIENT
from app.domain.matching import DOCTYPES, FORMATS, doctype_of, parse_pages
from app.domain.states import JobState

if TYPE_CHECKING:
    from app.convert_backend import Backend
    from app.convert_client import JobStatus, ResultInfo
    from app.domain.matching import WorkerSpec

SECRET_ENV = "CONVHUB_CLIENT_SECRET"
TIMED_OUT = 3
# The application each doctype is converted with when none is given (any version; the highest wins).
PREFERRED = {"odt": "LibreOffice Writer", "ods": "LibreOffice Calc", "odp": "LibreOffice Impress"}
START_FACTORY = (
    "start one: `convhub serve` runs a LibreOffice factory when LibreOffice is installed; or register one "
    "with `convhub factories add` and run it with `convhub factory run` (docs/factory.md)"
)


class CommandFailed(Exception):
    """A one-line error with its exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------- progress on a terminal


class StatusLine:
    """One line on stderr, rewritten in place; silent when stderr is not a terminal (piped, logged)."""

    def __init__(self, stream: IO[str] | None = None, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._width = 0
        self._last = 0.0

    def show(self, text: str, *, force: bool = True) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:  # byte counters: at most ten redraws a second
            return
        self._last = now
        cols = shutil.get_terminal_size((80, 24)).columns - 1
        text = text[:cols]
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    def clear(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def transfer(self, verb: str, name: str) -> Callable[[int, int | None], None]:
        """A progress callback for a byte stream: "uploading report.odt  12.0 of 40.0 MiB  30%"."""

        def update(done: int, total: int | None) -> None:
            if total:
                self.show(f"{verb} {name}  {_mib(done)} of {_mib(total)} MiB  {100 * done // total}%", force=done >= total)
            else:
                self.show(f"{verb} {name}  {_mib(done)} MiB", force=False)

        return update


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f}"


def _elapsed(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


# ---------------------------------------------------------------- waiting


def describe(st: JobStatus) -> str:
    name = JobState(st.state).name if st.state in {int(s) for s in JobState} else str(st.state)
    text = f"job {st.job_id} {name}"
    if st.state == JobState.QUEUED and st.attempts == 0:
        text += " (waiting for a factory)"
    elif st.attempts:
        text += f", attempt {st.attempts}"
    if st.state == JobState.QUEUED and st.failure_reason:
        text += f" (last: {st.failure_reason})"
    return text


def wait_for_end(
    backend: Backend,
    job: str,
    line: StatusLine,
    *,
    timeout: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> JobStatus:
    """Poll the job's status until it is COMPLETE or FAILED, showing state, attempt and elapsed time."""
    start = clock()
    delay = 0.2
    try:
        while True:
            st = backend.status(job)
            elapsed = clock() - start
            if st.state in (JobState.COMPLETE, JobState.FAILED):
                line.clear()
                return st
            if timeout is not None and elapsed >= timeout:
                line.clear()
                raise CommandFailed(f"gave up waiting after {timeout:g} s: {describe(st)}", TIMED_OUT)
            line.show(f"{describe(st)}  {_elapsed(elapsed)}")
            sleep(delay)
            delay = min(delay * 1.5, 2.0)  # quick for a fast conversion, gentle on the server after
    except KeyboardInterrupt:
        line.clear()
        print(f"convhub: stopped waiting; the job goes on (later: `convhub jobs result {job} --wait`)", file=sys.stderr)
        raise


def require_complete(st: JobStatus) -> None:
    if st.state == JobState.FAILED:
        raise CommandFailed(f"job {st.job_id} FAILED: {st.failure_reason or 'no reason given'}")
    if st.state != JobState.COMPLETE:
        raise CommandFailed(f"{describe(st)}: no result yet (add --wait to wait for it)")


# ---------------------------------------------------------------- writing results


def safe_name(filename: str, fallback: str) -> str:
    """The last component of a server-given file name; `fallback` when nothing usable is left."""
    name = "".join(c for c in filename if c >= " ").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return fallback if name in ("", ".", "..") or name.startswith(".") else name


@contextmanager
def _spool(directory: Path) -> Iterator[IO[bytes]]:
    """A temporary file beside the destination: a failed transfer leaves no partial document."""
    fh = tempfile.NamedTemporaryFile(dir=directory, prefix=".convhub-", suffix=".part", delete=False)
    try:
        yield fh
    except BaseException:
        fh.close()
        Path(fh.name).unlink(missing_ok=True)
        raise


def fetch_to(
    backend: Backend,
    job: str,
    output: str | None,
    name_for: Callable[[ResultInfo], str],
    line: StatusLine,
    *,
    never_overwrite: Path | None = None,
) -> tuple[Path | None, ResultInfo]:
    """Fetch the job's result into `output` ('-': stdout; None: `name_for(result)` in the current
    directory; an existing directory: that name in it). Returns the file written (None for stdout)
    and the result's description."""
    path = Path(output) if output not in (None, "-") else None  # type: ignore[arg-type]
    into_dir = path is not None and path.is_dir()
    if output == "-":
        target_dir = Path(tempfile.gettempdir())
    elif path is None or into_dir:
        target_dir = path or Path.cwd()
    else:
        target_dir = path.parent
    if not target_dir.is_dir():
        raise CommandFailed(f"{target_dir}: no such directory", 2)
    with _spool(target_dir) as fh:
        info = backend.fetch_result(job, fh, line.transfer("downloading", f"job {job}"))
        fh.close()
        line.clear()
        if output == "-":
            try:
                with open(fh.name, "rb") as src:
                    shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
                sys.stdout.buffer.flush()
            finally:
                os.unlink(fh.name)
            return None, info
        final = path if path is not None and not into_dir else target_dir / name_for(info)
        if never_overwrite is not None and final.exists() and final.resolve() == never_overwrite.resolve():
            raise CommandFailed(f"{final} is the input document; give another name with -o", 2)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(fh.name, 0o666 & ~mask)  # as if created by open(): the temporary file is 0600
        os.replace(fh.name, final)
    return final, info


def _report(path: Path | None, info: ResultInfo, job_id: int | str) -> None:
    if path is not None:
        print(f"wrote {path} ({info.size} bytes, {info.format}, job {job_id})")


# ---------------------------------------------------------------- backends from the command line


def add_server_options(p: argparse.ArgumentParser, *, client_help: str) -> None:
    g = p.add_argument_group("server (default: this machine's database, as the other commands)")
    g.add_argument("--server", metavar="URL", help="a convhub server's base URL: talk SOAP to it as a client application")
    g.add_argument("--client", metavar="NAME", help=client_help)
    g.add_argument("--secret", help=f"the client's secret with --server (default: ${SECRET_ENV})")


def open_backend(args: argparse.Namespace, *, submitting: bool) -> Backend:
    from app.convert_backend import LocalBackend, RemoteBackend

    if args.server:
        secret = args.secret if args.secret is not None else os.environ.get(SECRET_ENV)
        if not args.client or secret is None:
            raise CommandFailed(f"--server needs --client and --secret (or ${SECRET_ENV})", 2)
        return RemoteBackend(args.server, args.client, secret)
    if args.secret is not None:
        raise CommandFailed("--secret is for --server; local commands act on the database directly", 2)
    from app.config import load_settings

    return LocalBackend(load_settings(), args.client, broker=submitting)


def run(body: Callable[..., int]) -> Callable[..., int]:
    """One line on stderr and the exit status for the client commands' own errors; the server's
    refusals (status, Fault, transport) read the same way. The local services' errors go on to
    `convhub`'s main(), which prints them as one line too."""

    def wrapped(args: argparse.Namespace, *more: Any) -> int:
        from app.convert_client import ClientError

        try:
            return body(args, *more)
        except CommandFailed as exc:
            print(f"convhub: {exc}", file=sys.stderr)
            return exc.code
        except ClientError as exc:
            print(f"convhub: {exc}", file=sys.stderr)
            return 1

    wrapped.__doc__ = body.__doc__
    return wrapped


# ---------------------------------------------------------------- jobs result


@run
def cmd_jobs_result(args: argparse.Namespace) -> int:
    backend = open_backend(args, submitting=False)
    try:
        line = StatusLine()
        st = wait_for_end(backend, args.job, line, timeout=args.timeout) if args.wait else backend.status(args.job)
        require_complete(st)
        path, info = fetch_to(
            backend, str(st.job_id), args.output, lambda r: safe_name(r.filename, f"job-{st.job_id}.{r.format}"), line
        )
        _report(path, info, st.job_id)
        return 0
    finally:
        backend.close()


# ---------------------------------------------------------------- jobs submit --wait


def add_wait_options(p: argparse.ArgumentParser) -> None:
    """`jobs submit` options: wait for the end, and write the result."""
    p.add_argument("--wait", action="store_true", help="wait until the job is COMPLETE or FAILED (exit 1 if FAILED)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the result here ('-': stdout); implies --wait")
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long (exit 3)")


def after_submit(args: argparse.Namespace, job_id: int, line: str) -> int:
    """What `jobs submit` does once the job is queued: report it (`line`), and wait / write when asked."""
    waiting = bool(getattr(args, "wait", False) or getattr(args, "output", None))
    # With `-o -` stdout carries the document: everything else goes to stderr.
    print(line, file=sys.stderr if args.output == "-" else sys.stdout, flush=True)
    if not waiting:
        return 0
    return _wait_and_write(args, job_id)


@run
def _wait_and_write(args: argparse.Namespace, job_id: int) -> int:
    from app.config import load_settings
    from app.convert_backend import LocalBackend

    backend = LocalBackend(load_settings(), args.client, broker=False)
    try:
        line = StatusLine()
        st = wait_for_end(backend, str(job_id), line, timeout=args.timeout)
        require_complete(st)
        if args.output is None:
            print(f"job {job_id} COMPLETE (fetch the result with `convhub jobs result {job_id}`)")
            return 0
        path, info = fetch_to(backend, str(job_id), args.output, lambda r: r.filename, line)
        _report(path, info, job_id)
        return 0
    finally:
        backend.close()


# ---------------------------------------------------------------- convert


def choose_target(
    targets: list[WorkerSpec], doctype: str, fmt: str, application: str | None, version: str | None, *, where: str, hint: str
) -> WorkerSpec:
    """The (application, version) to convert with: the one asked for, else the doctype's usual
    application (Writer, Calc, Impress) at its highest version, else the first that serves it."""
    able = [t for t in targets if doctype in t.doctypes and fmt in t.formats]
    if not able:
        raise CommandFailed(f"no registered factory converts {doctype} to {fmt} at {where}; {hint}")
    wanted = [t for t in able if application in (None, t.application) and version in (None, t.version)]
    if not wanted:
        asked = " ".join(x for x in (application, version) if x)
        served = ", ".join(f"{t.application} {t.version}" for t in able)
        raise CommandFailed(f"no registered factory converts {doctype} to {fmt} with {asked} at {where} (served: {served})")
    usual = [t for t in wanted if t.application == PREFERRED.get(doctype)] or wanted
    return max(usual, key=lambda t: (_version_key(t.version), t.application))


def _version_key(version: str) -> tuple[tuple[int, object], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in version.replace("-", ".").split("."))


def default_output(source: Path, fmt: str) -> Callable[[ResultInfo], str]:
    """FILE's stem and the format's extension, in the current directory; png: the server's name."""
    ext = {"pdf": "pdf", "odf": source.suffix.lstrip(".").lower()}.get(fmt)
    if ext:
        return lambda _: f"{source.stem}.{ext}"
    return lambda r: safe_name(r.filename, f"{source.stem}.png")


@run
def cmd_convert(args: argparse.Namespace) -> int:
    source = Path(args.file)
    if not source.is_file():
        raise CommandFailed(f"{source}: no such file", 2)
    doctype = doctype_of(source.name)
    if doctype is None:
        raise CommandFailed(f"{source.name}: convhub converts ODF documents ({', '.join('.' + d for d in DOCTYPES)})", 2)
    try:
        page_start, page_end = parse_pages(args.pages)
    except ValueError as exc:
        raise CommandFailed(str(exc), 2) from None
    name_for = default_output(source, args.to)
    if args.output is None and args.to != "png":
        planned = Path.cwd() / name_for(None)  # type: ignore[arg-type]
        if planned.exists() and planned.resolve() == source.resolve():
            raise CommandFailed(f"{planned.name} would overwrite the input document; give another name with -o", 2)
    if args.output not in (None, "-") and Path(args.output).exists() and Path(args.output).resolve() == source.resolve():
        raise CommandFailed(f"{args.output} is the input document; give another name with -o", 2)

    backend = open_backend(args, submitting=True)
    try:
        hint = f"ask the server's operator to start one for {PREFERRED[doctype]}" if args.server else START_FACTORY
        target = choose_target(
            backend.targets(), doctype, args.to, args.application, args.version, where=backend.where, hint=hint
        )
        line = StatusLine()
        identifier = backend.upload(source, line.transfer("uploading", source.name))
        line.clear()
        job_id = backend.convert(identifier, target.application, target.version, args.to, page_start, page_end)
        if line.enabled:
            print(f"job {job_id}: {source.name} -> {args.to} with {target.application} {target.version}", file=sys.stderr)
        st = wait_for_end(backend, str(job_id), line, timeout=args.timeout)
        require_complete(st)
        path, info = fetch_to(backend, str(job_id), args.output, name_for, line, never_overwrite=source)
        _report(path, info, job_id)
        return 0
    finally:
        backend.close()


# ---------------------------------------------------------------- registration


def add_subcommands(sub: Any, jobs: Any) -> None:
    """`convhub convert` under the top-level subparsers, `convhub jobs result` under `jobs`."""
    sp = jobs.add_parser("result", help="write a COMPLETE job's result document")
    sp.add_argument("job", help="jobId or GUID (over --server: the jobId)")
    sp.add_argument("-o", "--output", metavar="FILE", help="where to write ('-': stdout; default: the result's file name here)")
    sp.add_argument("--wait", action="store_true", help="wait until the job ends first (exit 1 if it FAILED)")
    sp.add_argument("--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long (exit 3)")
    add_server_options(sp, client_help="with --server: the client application that owns the job")
    sp.set_defaults(func=cmd_jobs_result)

    sp = sub.add_parser(
        "convert",
        help="convert a document in one step: upload, convert, wait, write the result",
        description="Upload FILE, convert it with a registered factory, wait for the job and write the result. "
        "Without --server, on this machine's database (the one `convhub serve` uses).",
    )
    sp.add_argument("file", help="an ODF document (.odt, .ods, .odp)")
    sp.add_argument("--to", required=True, choices=FORMATS, help="the result's format")
    sp.add_argument("--pages", help="N, N-M or N- (default: all; png: the range's first page)")
    sp.add_argument("-o", "--output", metavar="OUT", help="where to write ('-': stdout; default: FILE's name with the format's extension, here)")
    sp.add_argument("--application", help="convert with this application (default: Writer, Calc or Impress for the doctype)")
    sp.add_argument("--version", help="... at this version (default: the highest served)")
    sp.add_argument("--timeout", type=float, metavar="SECONDS", help="give up waiting after this long (exit 3)")
    add_server_options(
        sp, client_help=f"the client application to submit as (local default: {LOCAL_CLIENT}, created on first use)"
    )
    sp.set_defaults(func=cmd_convert)
