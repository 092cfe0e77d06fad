"""Pixels of the rendering comparison: rasterizing a result, scoring a page pair, the difference image.

Used only by the comparison task (app.services.comparison.run): a page view never renders anything.
PDF pages are rasterized by poppler's pdftoppm at `DPI`; a PNG result is one page, taken as it is.
The score's definition is app.domain.comparison's.
"""

from __future__ import annotations

import io
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops

from app.domain import comparison as rules

PDFTOPPM_TIMEOUT = 120  # seconds per document
WHITE = (255, 255, 255)


class RasterizeError(Exception):
    """A result could not be turned into page images (a one-line reason)."""


@dataclass(frozen=True)
class PageImage:
    page: int
    png: bytes
    width: int
    height: int


def rasterize(data: bytes, fmt: str, *, dpi: int = rules.DPI, max_pages: int = rules.MAX_PAGES) -> tuple[int, list[PageImage]]:
    """(page count, the first `max_pages` pages as PNG) of a PDF or PNG result."""
    if fmt == "png":
        img = _open(data)
        return 1, [PageImage(1, data, img.width, img.height)]
    if fmt != "pdf":
        raise RasterizeError(f"a {fmt or 'format-less'} result has no pages to compare (compare pdf or png)")
    with tempfile.TemporaryDirectory(prefix="convhub-compare-") as tmp:
        src = Path(tmp) / "in.pdf"
        src.write_bytes(data)
        count = _pdf_pages(src)
        last = min(count, max_pages)
        if last == 0:
            return 0, []
        try:
            subprocess.run(
                ["pdftoppm", "-r", str(dpi), "-png", "-f", "1", "-l", str(last), str(src), str(Path(tmp) / "p")],
                check=True, capture_output=True, timeout=PDFTOPPM_TIMEOUT,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise RasterizeError(f"pdftoppm failed: {exc}") from None
        # pdftoppm pads the page number with zeros to the width of the last one: sort by number.
        files = sorted(Path(tmp).glob("p-*.png"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
        pages = []
        for n, path in enumerate(files, start=1):
            png = path.read_bytes()
            img = _open(png)
            pages.append(PageImage(n, png, img.width, img.height))
        return count, pages


def _pdf_pages(path: Path) -> int:
    try:
        out = subprocess.run(["pdfinfo", str(path)], check=True, capture_output=True, text=True, timeout=PDFTOPPM_TIMEOUT).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RasterizeError(f"pdfinfo failed: not a readable PDF ({exc.__class__.__name__})") from None
    for line in out.splitlines():
        if line.startswith("Pages:"):
            return int(line.split()[1])
    raise RasterizeError("pdfinfo reported no page count")


def _open(png: bytes) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(png))
        img.load()
    except Exception as exc:  # Pillow raises several kinds for a broken image
        raise RasterizeError(f"not a readable image ({exc.__class__.__name__})") from None
    return img


def _rgb_padded(png: bytes, size: tuple[int, int]) -> Image.Image:
    img = _open(png)
    if img.mode in ("RGBA", "LA", "P"):
        base = Image.new("RGBA", img.size, (*WHITE, 255))
        img = Image.alpha_composite(base, img.convert("RGBA"))
    img = img.convert("RGB")
    if img.size == size:
        return img
    canvas = Image.new("RGB", size, WHITE)
    canvas.paste(img, (0, 0))
    return canvas


@dataclass(frozen=True)
class Difference:
    score: float
    differing: int
    total: int
    image: bytes  # PNG: the first page faded, differing pixels in red


def compare(png_a: bytes, png_b: bytes, *, threshold: int = rules.THRESHOLD) -> Difference:
    """Score two page images (app.domain.comparison's rule) and draw their difference image."""
    a_img, b_img = _open(png_a), _open(png_b)
    size = rules.padded_size(a_img.size, b_img.size)
    a, b = _rgb_padded(png_a, size), _rgb_padded(png_b, size)
    r, g, bl = ImageChops.difference(a, b).split()
    largest = ImageChops.lighter(ImageChops.lighter(r, g), bl)  # max channel difference per pixel
    mask = largest.point(lambda v: 255 if v > threshold else 0)
    differing = mask.histogram()[255]
    total = size[0] * size[1]
    # The difference image: both pages blended and faded, the differing pixels painted red.
    faded = Image.blend(a, b, 0.5).point(lambda v: 170 + v // 3)
    faded.paste(Image.new("RGB", size, (220, 0, 0)), (0, 0), mask)
    out = io.BytesIO()
    faded.save(out, format="PNG", optimize=True)
    return Difference(rules.score(differing, total), differing, total, out.getvalue())
