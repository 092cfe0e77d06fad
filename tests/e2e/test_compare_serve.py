"""Issue 17's "done when": on the all-in-one (`convhub serve` with its local factory serving LibreOffice
Writer and AbiWord), `convhub compare report.odt --wait` prints each application's score per page and
the URL of the comparison page, and that page, in headless Chromium, shows the renderings' pages side
by side (every thumbnail loads), the scores, and a page's difference image on click.

The document (tests/factorykit.report_odt) has a table, an embedded image and footnotes. The page's
screenshot is kept under tests/artifacts/; with CONVHUB_UPDATE_DOCS=1 it also replaces docs/comparison.png.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require
from tests.e2e.test_serve import CONVHUB, _env
from tests.e2e.test_serve_local_factory import MARKER, Served, lo  # noqa: F401 - lo is a fixture
from tests.factorykit import report_odt

pytestmark = [pytest.mark.libreoffice, pytest.mark.slow, pytest.mark.timeout(600)]

OPERATOR = ("admin", "op-secret-for-the-comparison")
ROOT = Path(__file__).resolve().parents[2]
DOCS, ARTIFACTS = ROOT / "docs", ROOT / "tests" / "artifacts"
# As tests/integration/ops/test_ops_browser.py (not imported: its module marks need that folder's conftest).
CHROMIUM = os.environ.get("CONVHUB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    require("Chromium", os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} missing: run scripts/install-chromium.sh")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require("Chromium", False, "the playwright Python package is not installed")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()
LINE = re.compile(r"^  (?P<name>.+?)\s+job (?P<job>\d+)  (?P<pages>\d+) pages?(?P<ref> \(reference\))?  (?P<scores>.*)$")


def test_compare_on_the_all_in_one_prints_scores_and_the_page_shows_them(lo, browser, tmp_path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811 - lo: the fixture
    require("AbiWord", shutil.which("abiword") is not None, "abiword is not installed (apt-get install abiword)")
    data = tmp_path / "var"
    env = dict(_env(data), CONVHUB_E2E_MARKER=MARKER, CONVHUB_OPERATOR_USER=OPERATOR[0], CONVHUB_OPERATOR_PASSWORD=OPERATOR[1])
    srv = Served(data, tmp_path / "serve.log", env=env)
    try:
        srv.healthy()
        assert "AbiWord 3." in srv.log() and f"LibreOffice Writer {lo}: odt" in srv.log()
        (tmp_path / "report.odt").write_bytes(report_odt())
        out = subprocess.run(
            CONVHUB + ["compare", "report.odt", "--wait", "--timeout", "300"], cwd=tmp_path,
            env=dict(env, CONVHUB_PUBLIC_URL=srv.base), capture_output=True, text=True, timeout=360,
        )
        assert out.returncode == 0, out.stderr + out.stdout
        lines = out.stdout.splitlines()
        assert lines[0] == "comparison 1: report.odt -> pdf, jobs 1, 2", out.stdout
        assert lines[1] == "comparison 1 complete", out.stdout
        assert lines[2].startswith("reference: AbiWord 3.") and "(job 1)" in lines[2]
        url = f"{srv.base}/ops/comparisons/1"
        assert lines[-1] == url
        rows = {m["name"].strip(): m for line in lines if (m := LINE.match(line))}
        assert len(rows) == 2 and f"LibreOffice Writer {lo}" in rows, out.stdout
        (abiword,) = [m for n, m in rows.items() if re.fullmatch(r"AbiWord \d+\.\d+", n)]
        writer = rows[f"LibreOffice Writer {lo}"]
        assert abiword["ref"] and not writer["ref"]
        ref_pages, writer_pages = int(abiword["pages"]), int(writer["pages"])
        assert ref_pages >= 2 and writer_pages >= 2  # two pages of text, a table, an image, footnotes
        assert abiword["scores"] == "  ".join(f"p{n} 0.00" for n in range(1, ref_pages + 1))
        scores = re.findall(r"p(\d+) (\d+\.\d\d)", writer["scores"])
        assert [int(n) for n, _ in scores] == list(range(1, min(ref_pages, writer_pages) + 1))
        # Two applications do not set a page alike: every common page differs, none entirely.
        assert all(0.0 < float(s) < 100.0 for _, s in scores), writer["scores"]
        if ref_pages != writer_pages:
            assert "page counts differ" in out.stdout

        ctx = browser.new_context(
            http_credentials={"username": OPERATOR[0], "password": OPERATOR[1]}, viewport={"width": 1100, "height": 900}
        )
        outside: list[str] = []

        def only_local(route) -> None:  # type: ignore[no-untyped-def]
            if route.request.url.startswith(srv.base + "/"):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        ctx.route("**/*", only_local)
        try:
            page = ctx.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            resp = page.goto(url)
            assert resp is not None and resp.status == 200
            page.wait_for_load_state("networkidle")
            assert page.locator("#comparison-state").inner_text() == "complete"
            heads = page.locator("#comparison thead th.cmp-head")
            assert heads.count() == 2 and "reference" in heads.nth(0).inner_text()
            thumbs = page.locator("#comparison img")
            assert thumbs.count() == ref_pages + writer_pages
            widths = thumbs.evaluate_all("imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")
            assert all(w > 300 for w in widths), widths  # every page image loaded (A4 at 60 dpi: 496 wide)
            boxes = [thumbs.nth(i).bounding_box() for i in (0, 1)]
            assert boxes[0] and boxes[1] and round(boxes[0]["y"]) == round(boxes[1]["y"])  # side by side
            shown = page.locator("#comparison .score").all_inner_texts()
            assert shown == [s for _, s in scores]
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "comparison.png"))
            if os.environ.get("CONVHUB_UPDATE_DOCS") == "1":
                shutil.copyfile(ARTIFACTS / "comparison.png", DOCS / "comparison.png")

            # A click shows the page's difference image (computed by the task, only read here).
            page.locator("a.cmp-thumb").first.click()
            dialog = page.locator("dialog#cmp-diff")
            dialog.wait_for(state="visible")
            # (visible before its image has loaded: wait for the image, then check its width)
            page.wait_for_function("() => { const i = document.querySelector('dialog#cmp-diff img'); return i && i.complete; }")
            assert page.locator("dialog#cmp-diff img").evaluate("i => i.naturalWidth") > 300
            assert f"score {scores[0][1]}" in page.locator(".cmp-diff-title").inner_text()
            page.screenshot(path=str(ARTIFACTS / "comparison-diff.png"))

            # The job pages link the comparison.
            page.goto(f"{srv.base}/ops/jobs/2")
            page.click("a.comparison-link")
            page.wait_for_url(url)
            assert outside == [] and errors == []
        finally:
            ctx.close()
    finally:
        assert srv.stop() == 0
