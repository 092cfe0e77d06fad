"""`convhub compare FILE [--format pdf|png] [--pages N-M] [--wait] [--reference JOBID]`: one document
rendered by every application that serves it, then the comparison's scores (app.services.comparison).

Without --server, on this machine's database (as `convhub convert`); with --server, over SOAP as a client
application (contentConvertAll, getContentComparison). With --wait it waits for every job and then for
the comparison task, and prints each application's score per page and the comparison page's URL.

Imports only the standard library at module level, as app.cli_results.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli_results import (
    TIMED_OUT,
    CommandFailed,
    StatusLine,
    add_server_options,
    open_backend,
    run,
    wait_for_end,
)
from app.convert_backend import LOCAL_CLIENT
from app.domain.matching import DOCTYPES, doctype_of, parse_pages

if TYPE_CHECKING:
    from app.convert_backend import Backend
    from app.convert_client import ComparisonInfo

FORMATS = ("pdf", "png")
ENDED = ("complete", "failed")


def wait_for_comparison(
    backend: Backend,
    comparison_id: int,
    reference: int | None,
    line: StatusLine,
    *,
    deadline: float | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ComparisonInfo:
    """Poll the comparison until its task has stored the scores (or failed)."""
    start = clock()
    delay = 0.5
    while True:
        info = backend.comparison(comparison_id, reference)
        if info.state in ENDED:
            line.clear()
            return info
        if deadline is not None and clock() >= deadline:
            line.clear()
            raise CommandFailed(f"gave up waiting: comparison {comparison_id} is {info.state}", TIMED_OUT)
        line.show(f"comparison {comparison_id} {info.state}  {int(clock() - start)}s")
        sleep(delay)
        delay = min(delay * 1.5, 2.0)


def report(info: ComparisonInfo, url: str) -> list[str]:
    """The lines `compare --wait` prints: one per rendering with its score per page, then the URL."""
    ref = next((r for r in info.renderings if r.job_id == info.reference_job_id), None)
    lines = [f"comparison {info.comparison_id} {info.state}" + (f": {info.detail}" if info.detail else "")]
    if ref is not None:
        lines.append(f"reference: {ref.application} {ref.version} (job {ref.job_id}); score 0 = identical pixels, 100 = nothing in common")
    width = max((len(f"{r.application} {r.version}") for r in info.renderings), default=0)
    for r in info.renderings:
        name = f"{r.application} {r.version}".ljust(width)
        pages = "? pages" if r.page_count is None else f"{r.page_count} page{'' if r.page_count == 1 else 's'}"
        scores = []
        for page, score, missing in r.pages:
            if missing == "rendering":
                scores.append(f"p{page} missing")
            elif missing == "reference":
                scores.append(f"p{page} extra")
            elif score is not None:
                scores.append(f"p{page} {score:.2f}")
        tail = "  ".join(scores) if scores else (r.note or "no pages")
        tag = " (reference)" if r.job_id == info.reference_job_id else ""
        lines.append(f"  {name}  job {r.job_id}  {pages}{tag}  {tail}")
        if r.note and scores:
            lines.append(f"  {' ' * width}  note: {r.note}")
    if info.page_counts_differ:
        lines.append("page counts differ: " + ", ".join(f"{r.application} {r.version} {r.page_count}" for r in info.renderings if r.page_count is not None))
    lines.append(url)
    return lines


@run
def cmd_compare(args: argparse.Namespace) -> int:
    source = Path(args.file)
    if not source.is_file():
        raise CommandFailed(f"{source}: no such file", 2)
    if doctype_of(source.name) is None:
        raise CommandFailed(f"{source.name}: convhub converts ODF documents ({', '.join('.' + d for d in DOCTYPES)})", 2)
    try:
        page_start, page_end = parse_pages(args.pages)
    except ValueError as exc:
        raise CommandFailed(str(exc), 2) from None
    backend = open_backend(args, submitting=True)
    try:
        line = StatusLine()
        identifier = backend.upload(source, line.transfer("uploading", source.name))
        line.clear()
        comparison_id, job_ids = backend.convert_all(identifier, args.format, page_start, page_end)
        url = backend.comparison_url(comparison_id)
        print(f"comparison {comparison_id}: {source.name} -> {args.format}, jobs {', '.join(map(str, job_ids))}", flush=True)
        if not args.wait:
            print(url)
            return 0
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        for job_id in job_ids:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait_for_end(backend, str(job_id), line, timeout=left)
        info = wait_for_comparison(backend, comparison_id, args.reference, line, deadline=deadline)
        for text in report(info, url):
            print(text)
        return 0 if info.state == "complete" and not info.detail else 1
    finally:
        backend.close()


def add_subcommand(sub: Any) -> None:
    sp = sub.add_parser(
        "compare",
        help="render a document with every application that serves it and compare the pages",
        description="Upload FILE and convert it with every registered (application, version) that serves its "
        "doctype and the format (one job each); with --wait, print each application's difference score per "
        "page against the reference rendering, and the comparison page's URL.",
    )
    sp.add_argument("file", help="an ODF document (.odt, .ods, .odp)")
    sp.add_argument("--format", default="pdf", choices=FORMATS, help="the renderings' format (default: pdf)")
    sp.add_argument("--pages", help="N, N-M or N- (default: all)")
    sp.add_argument("--wait", action="store_true", help="wait for the jobs and the comparison, then print the scores")
    sp.add_argument("--reference", type=int, metavar="JOBID", help="score against this job's rendering (default: the first)")
    sp.add_argument("--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long (exit 3)")
    add_server_options(sp, client_help=f"the client application to submit as (local default: {LOCAL_CLIENT}, created on first use)")
    sp.set_defaults(func=cmd_compare)

