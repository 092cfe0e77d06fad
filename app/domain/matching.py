"""Matching jobs to a factory's workers, and queue naming per (application, version)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

DOCTYPES = ("odt", "ods", "odp")
FORMATS = ("pdf", "png", "odf")


@dataclass(frozen=True)
class WorkerSpec:
    """An (application, version) pair a factory can render, with the doctypes and formats it supports."""

    application: str
    version: str
    doctypes: frozenset[str]
    formats: frozenset[str]

    @classmethod
    def parse(cls, text: str) -> WorkerSpec:
        """Parse "APPLICATION|VERSION|DOCTYPES|FORMATS", e.g. "LibreOffice Writer|7.4|odt|pdf,png,odf"."""
        parts = [p.strip() for p in text.split("|")]
        if len(parts) != 4 or not parts[0] or not parts[1]:
            raise ValueError(f"worker {text!r} is not APPLICATION|VERSION|DOCTYPES|FORMATS")
        doctypes = frozenset(d.strip().lower() for d in parts[2].split(",") if d.strip())
        formats = frozenset(f.strip().lower() for f in parts[3].split(",") if f.strip())
        bad = (doctypes - set(DOCTYPES)) | (formats - set(FORMATS))
        if not doctypes or not formats or bad:
            raise ValueError(
                f"worker {text!r}: doctypes must be among {','.join(DOCTYPES)} and formats among {','.join(FORMATS)}"
            )
        return cls(parts[0], parts[1], doctypes, formats)

    def format(self) -> str:
        return f"{self.application}|{self.version}|{','.join(sorted(self.doctypes))}|{','.join(sorted(self.formats))}"

    @property
    def pair(self) -> tuple[str, str]:
        return (self.application, self.version)

    def accepts(self, application: str, version: str, doctype: str, fmt: str) -> bool:
        """An empty format means the factory decides, which every worker accepts."""
        return (
            (application, version) == self.pair
            and doctype in self.doctypes
            and (fmt == "" or fmt in self.formats)
        )


def matching_workers(workers: Iterable[WorkerSpec], application: str, version: str, doctype: str, fmt: str) -> list[WorkerSpec]:
    return [w for w in workers if w.accepts(application, version, doctype, fmt)]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "x"


def queue_name(application: str, version: str) -> str:
    """Celery queue of a pair: ``convert.<app slug>.<version slug>``.

    Slug: lower-case, every run of characters outside [a-z0-9] becomes one '-', trimmed.
    ("LibreOffice Writer", "7.4") -> "convert.libreoffice-writer.7-4".
    """
    return f"convert.{_slug(application)}.{_slug(version)}"


# Other ODF extensions converted as one of DOCTYPES: ODF text-web (.oth) is a Writer text document.
DOCTYPE_ALIASES = {"oth": "odt"}


def doctype_of(filename: str) -> str | None:
    """The ODF doctype from a file name's extension (.oth counts as odt), or None."""
    ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    ext = DOCTYPE_ALIASES.get(ext, ext)
    return ext if ext in DOCTYPES else None


def parse_pages(text: str | None) -> tuple[int, int]:
    """'2-3' -> (2, 3); '4' -> (4, 4); '2-' -> (2, 0); None/'' -> (1, 0). pageEnd 0 = to the end."""
    if text is None or text.strip() == "":
        return (1, 0)
    s = text.strip()
    try:
        if "-" in s:
            a, b = s.split("-", 1)
            start = int(a) if a.strip() else 1
            end = int(b) if b.strip() else 0
        else:
            start = end = int(s)
    except ValueError:
        raise ValueError(f"page range {text!r} is not N, N-M or N-") from None
    validate_pages(start, end)
    return (start, end)


MAX_PAGE = 2**31 - 1  # the page columns are 32-bit integers


def validate_pages(start: int, end: int) -> None:
    if start > MAX_PAGE or end > MAX_PAGE:
        raise ValueError(f"page numbers must be at most {MAX_PAGE}")
    if start < 0 or end < 0 or (end and start > end):
        raise ValueError(f"bad page range {start}-{end}")
