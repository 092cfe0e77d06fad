"""The ops page in headless Chromium (Debian's package, driven by Playwright's Python API).

Skips locally when /usr/bin/chromium is missing (scripts/install-chromium.sh installs it) and
fails when CI=true. A screenshot is kept under tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.conftest import add_client, add_factory, require, start_server, submit_job
from tests.integration.ops.conftest import OPERATOR, poll_once

CHROMIUM = os.environ.get("CONVHUB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

pytestmark = pytest.mark.chromium


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


def test_page_loads_and_follows_a_poll(browser, make_runtime) -> None:  # type: ignore[no-untyped-def]
    rt = make_runtime(operator_user=OPERATOR[0], operator_password=OPERATOR[1])
    add_factory(rt, name="lo-1")
    cid = add_client(rt)
    job_id, guid = submit_job(rt, cid)
    srv = start_server(rt)
    try:
        # Without credentials: refused.
        anon = browser.new_context()
        assert anon.request.get(f"{srv.url}/ops").status == 401
        anon.close()

        ctx = browser.new_context(http_credentials={"username": OPERATOR[0], "password": OPERATOR[1]})
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        resp = page.goto(f"{srv.url}/ops?refresh=1")
        assert resp is not None and resp.status == 200
        row = page.locator(f'#oldest tr[data-job="{job_id}"]')
        row.wait_for(state="visible", timeout=5000)
        queued = page.locator('tr[data-pair="LibreOffice Writer|7.4"] td[data-state="QUEUED"]')
        assert queued.inner_text() == "1"

        claimed = poll_once(rt, name="lo-1")
        assert claimed is not None and claimed.guid == guid
        # The page refreshes itself (every second here): the job leaves the waiting list and
        # shows as handed out, and the factory shows one active lease.
        leased = page.locator(
            'tr[data-pair="LibreOffice Writer|7.4"] td[data-state="REQUESTED_FOR_PROCESSING"]'
        )
        leased.filter(has_text="1").wait_for(timeout=10000)
        assert queued.inner_text() == "0"
        assert row.count() == 0
        assert page.locator('tr[data-factory="lo-1"] td').nth(3).inner_text() == "1"

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "ops-page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 1000

        # Lookup by GUID through the form.
        page.fill("#job-ref", guid)
        page.click("form.lookup button")
        page.wait_for_url(f"**/ops/jobs/{guid}")
        assert page.locator("#job-state").inner_text() == "REQUESTED_FOR_PROCESSING"
        page.screenshot(path=str(ARTIFACTS / "ops-job.png"), full_page=True)
        assert errors == []  # no CSP violation, no script error
        ctx.close()
    finally:
        srv.stop()
