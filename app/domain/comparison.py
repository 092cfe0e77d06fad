"""Rendering comparison rules: states, page alignment and the difference score (docs/comparison.md).

The score of two renderings of one page, 0-100:

1. Both pages are rasterized at `DPI` (PNG results are taken as they are) as 8-bit RGB.
2. The smaller image is padded on the right and bottom with white to the larger width and height.
3. A pixel differs when the largest of its three channel differences exceeds `THRESHOLD`
   (out of 255): anti-aliasing noise below it does not count.
4. score = 100 x differing pixels / all pixels of the padded size, rounded to 2 decimals.

0 means identical pixels (up to the threshold); 100 means no pixel in common. A page that only one
rendering has is not scored: it is reported as missing (a page-count mismatch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

DPI = 60  # one resolution for every page: an A4 page is 496 x 702 pixels
THRESHOLD = 16  # a channel difference up to this is noise (anti-aliasing, colour rounding)
MAX_PAGES = 50  # pages compared per rendering; later ones are counted but not rasterized


class ComparisonState(IntEnum):
    WAITING = 0  # some job has not ended
    RUNNING = 1  # the comparison task took it
    COMPLETE = 2  # scores stored
    FAILED = 3  # the task could not compare (reason stored)


STATE_NAMES = {s: s.name.lower() for s in ComparisonState}


def score(differing: int, total: int) -> float:
    """The difference score of a page pair from its pixel counts (see the module docstring)."""
    if total <= 0:
        return 0.0
    if not 0 <= differing <= total:
        raise ValueError(f"differing pixels {differing} out of range 0..{total}")
    return round(100.0 * differing / total, 2)


def padded_size(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """The size both images are padded to: the larger width and the larger height."""
    return max(a[0], b[0]), max(a[1], b[1])


@dataclass(frozen=True)
class PagePair:
    """Page `page` (1-based) of two renderings; `missing` names the side that lacks it, if any."""

    page: int
    missing: str | None  # None, "a" or "b"


def align(pages_a: int, pages_b: int) -> list[PagePair]:
    """Pages aligned by number: the pages both have are scored; the rest are reported as missing."""
    pairs = []
    for page in range(1, max(pages_a, pages_b) + 1):
        missing = None if page <= min(pages_a, pages_b) else ("b" if page > pages_b else "a")
        pairs.append(PagePair(page, missing))
    return pairs


def pairs(job_ids: Sequence[int]) -> list[tuple[int, int]]:
    """Every unordered pair of renderings, in submission order: (a, b) with a before b."""
    return [(a, b) for i, a in enumerate(job_ids) for b in job_ids[i + 1 :]]


def ordered(pair: tuple[int, int], reference: int) -> tuple[int, int]:
    """The pair (reference, other) as stored (a, b) or reversed."""
    a, b = pair
    return (a, b) if a == reference else (b, a)
