"""The trends section of /ops in headless Chromium, fed by scripts/ops_trends_screenshot.py's simulation.

Offline: every request that does not go to the test server is refused and recorded. A screenshot is
kept under tests/artifacts/ (docs/ops-trends.png is made by the script itself).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tests.conftest import start_server
from tests.integration.ops.test_ops_browser import ARTIFACTS, browser  # noqa: F401 - the fixture
from tests.trendkit import record

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.chromium


def demo_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("ops_trends_screenshot", ROOT / "scripts" / "ops_trends_screenshot.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up while being defined
    spec.loader.exec_module(mod)
    return mod


def test_trends_in_chromium(browser, make_runtime, clock) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    demo = demo_script()
    rt = make_runtime(operator_user=demo.OPERATOR[0], operator_password=demo.OPERATOR[1], max_attempts=1)
    demo.simulate(rt, clock, minutes=30, scale=0.3)  # 12:00-12:30, a snapshot at every minute
    clock.advance(25)
    srv = start_server(rt)
    ctx = browser.new_context(
        http_credentials={"username": demo.OPERATOR[0], "password": demo.OPERATOR[1]},
        viewport={"width": 1480, "height": 1000},
    )
    outside: list[str] = []

    def only_local(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.url.startswith(srv.url + "/"):
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
        resp = page.goto(f"{srv.url}/ops?trend_refresh=1")
        assert resp is not None and resp.status == 200

        charts = page.locator("#trends svg.chart")
        assert charts.count() == 3
        boxes = [charts.nth(i).bounding_box() for i in range(3)]
        assert all(b is not None and b["width"] > 300 and b["height"] > 140 for b in boxes)
        assert len({round(b["y"]) for b in boxes if b}) == 1  # side by side at this width
        queued = charts.nth(0).locator('g[data-series="queued"] circle')
        assert queued.count() == 30
        backlog_now = page.locator("#trend-backlog").inner_text()
        last_tip = queued.nth(29).locator("title").text_content()
        assert last_tip == f"12:30 UTC · queued: {backlog_now} jobs"
        assert page.locator("#trends table.trend-pairs tr[data-trend-pair]").count() == len(demo.PAIRS)

        # trends.js re-fetches the section (every second here): a new minute's point appears.
        clock.advance(35)
        assert record(rt) > 0
        charts.nth(0).locator('g[data-series="queued"] circle').nth(30).wait_for(state="attached", timeout=10000)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.locator("#trends").screenshot(path=str(ARTIFACTS / "ops-trends.png"))

        # Choosing an application shows it at once (trends.js submits the selector's form).
        page.select_option("#trend-pair", "LibreOffice Impress|7.4")
        page.wait_for_url("**pair=LibreOffice*")
        assert "LibreOffice Impress 7.4" in page.locator("#trends h2").inner_text()
        assert page.locator("#trends").get_attribute("data-pair") == "LibreOffice Impress|7.4"

        # The day window keeps the chosen application.
        page.click("#trends nav a:has-text('Last 24 hours')")
        page.wait_for_url("**trend=day**")
        assert page.locator("#trends").get_attribute("data-window") == "day"
        assert page.locator("#trends").get_attribute("data-pair") == "LibreOffice Impress|7.4"
        assert charts.nth(0).locator('g[data-series="queued"] circle').count() == 4  # 12:01-12:31 in 10-minute steps
        page.screenshot(path=str(ARTIFACTS / "ops-trends-day.png"), full_page=True)

        assert outside == []  # works offline: nothing but the server itself was asked for anything
        assert errors == []  # no CSP violation, no script error
    finally:
        ctx.close()
        srv.stop()
