"""The comparison's pure rules (app.domain.comparison) and its pixel work (app.services.comparison_images)
on images drawn here: identical pages score 0, a page with nothing in common 100, padding and the
noise threshold as documented in docs/comparison.md."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from app.domain import comparison as rules
from app.services import comparison_images as images


def png(size: tuple[int, int], colour: tuple[int, int, int] = (255, 255, 255), box: tuple[int, int, int, int] | None = None,
        box_colour: tuple[int, int, int] = (0, 0, 0), mode: str = "RGB") -> bytes:
    img = Image.new("RGB", size, colour)
    if box:
        img.paste(Image.new("RGB", (box[2] - box[0], box[3] - box[1]), box_colour), box[:2])
    out = io.BytesIO()
    img.convert(mode).save(out, format="PNG")
    return out.getvalue()


def test_score_is_the_percentage_of_differing_pixels_rounded_to_two_decimals() -> None:
    assert rules.score(0, 1000) == 0.0
    assert rules.score(1000, 1000) == 100.0
    assert rules.score(1, 3) == 33.33
    assert rules.score(0, 0) == 0.0
    with pytest.raises(ValueError):
        rules.score(5, 4)


def test_pages_align_by_number_and_the_extra_ones_are_missing_on_one_side() -> None:
    assert rules.align(2, 2) == [rules.PagePair(1, None), rules.PagePair(2, None)]
    assert rules.align(3, 1) == [rules.PagePair(1, None), rules.PagePair(2, "b"), rules.PagePair(3, "b")]
    assert rules.align(0, 2) == [rules.PagePair(1, "a"), rules.PagePair(2, "a")]
    assert rules.pairs([7, 8, 9]) == [(7, 8), (7, 9), (8, 9)]
    assert rules.padded_size((100, 50), (80, 70)) == (100, 70)


def test_identical_pages_score_0_and_pages_with_nothing_in_common_100() -> None:
    page = png((40, 50), box=(5, 5, 20, 30))
    same = images.compare(page, page)
    assert (same.score, same.differing, same.total) == (0.0, 0, 2000)
    opposite = images.compare(png((40, 50), (255, 255, 255)), png((40, 50), (0, 0, 0)))
    assert (opposite.score, opposite.differing) == (100.0, 2000)
    # The difference image is a PNG of the padded size.
    assert Image.open(io.BytesIO(opposite.image)).size == (40, 50)


def test_a_box_that_moved_counts_both_places_and_padding_is_white() -> None:
    a = png((100, 100), box=(0, 0, 10, 10))
    b = png((100, 100), box=(50, 50, 60, 60))
    assert images.compare(a, b).score == 2.0  # 200 of 10,000 pixels
    # A narrower white page is padded with white: only the box differs, over the larger size.
    narrow_white = png((50, 100))
    assert images.compare(narrow_white, png((100, 100), box=(60, 0, 70, 10))).score == 1.0


def test_channel_differences_up_to_the_threshold_are_noise() -> None:
    base = png((10, 10), (200, 200, 200))
    assert images.compare(base, png((10, 10), (200, 200, 200 - rules.THRESHOLD))).score == 0.0
    assert images.compare(base, png((10, 10), (200, 200 - rules.THRESHOLD - 1, 200))).score == 100.0


def test_transparent_and_palette_pngs_are_composited_on_white() -> None:
    white = png((20, 20))
    clear = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    out = io.BytesIO()
    clear.save(out, format="PNG")
    assert images.compare(white, out.getvalue()).score == 0.0
    assert images.compare(white, png((20, 20), mode="P")).score == 0.0


def test_rasterize_takes_a_png_as_one_page_and_refuses_what_has_no_pages() -> None:
    page = png((30, 40))
    count, pages = images.rasterize(page, "png")
    assert count == 1 and pages[0].png == page and (pages[0].width, pages[0].height) == (30, 40)
    with pytest.raises(images.RasterizeError, match="no pages to compare"):
        images.rasterize(b"PK...", "odf")
    with pytest.raises(images.RasterizeError, match="not a readable image"):
        images.rasterize(b"not a png", "png")
