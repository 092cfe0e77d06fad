"""Make docs/ops-trends.png: an hour of realistic activity on five pairs, shown by /ops in headless Chromium.

Runs everything in a temporary directory (SQLite, no broker): jobs are submitted, claimed, finished and
failed through the real services while a clock moves minute by minute and a snapshot is recorded at
each minute, as beat does. Then the web app is served on loopback and the trends section of /ops is
captured with Debian's Chromium (scripts/install-chromium.sh) driven by Playwright.

    .venv/bin/python scripts/ops_trends_screenshot.py [--out docs/ops-trends.png] [--window hour|day]

`simulate()` is also used by the browser test (tests/integration/ops/test_ops_trends_browser.py).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
OPERATOR = ("admin", "demo-operator-secret")
START = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Pair:
    application: str
    version: str
    doctype: str
    arrivals: Callable[[int], float]  # mean jobs arriving in minute m
    capacity: int  # jobs the factory takes per minute
    fail_rate: float
    down: range = range(0)  # minutes when its factory is stopped


def _wave(base: float, amp: float, period: float, phase: float = 0.0) -> Callable[[int], float]:
    return lambda m: max(0.0, base + amp * math.sin(2 * math.pi * (m + phase) / period))


def _burst(base: float, extra: float, start: int, end: int) -> Callable[[int], float]:
    return lambda m: base + (extra if start <= m < end else 0.0)


PAIRS = (
    Pair("LibreOffice Writer", "7.4", "odt", _burst(9, 14, 18, 30), capacity=14, fail_rate=0.02),
    Pair("LibreOffice Calc", "7.4", "ods", _wave(5, 3, 25), capacity=8, fail_rate=0.04),
    Pair("LibreOffice Impress", "7.4", "odp", _wave(3, 1.5, 40, 10), capacity=6, fail_rate=0.03, down=range(34, 44)),
    Pair("AbiWord", "3.0", "odt", _wave(2, 1, 30, 5), capacity=4, fail_rate=0.15),
    Pair("Gnumeric", "1.12", "ods", lambda m: 0.8, capacity=3, fail_rate=0.05),
)


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> datetime:
        self.t += timedelta(seconds=seconds)
        return self.t


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: fine for the small means used here.
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def simulate(  # type: ignore[no-untyped-def]
    rt, clock, *, minutes: int = 60, seed: int = 7, pairs: tuple[Pair, ...] = PAIRS, scale: float = 1.0
) -> None:
    """`minutes` minutes of traffic on `pairs` (arrivals and capacities times `scale`), a snapshot at
    every minute; the clock ends on a minute boundary."""
    from app.domain.matching import WorkerSpec
    from app.services import admin, claims, leases, submission, trends

    rng = random.Random(seed)
    now = rt.now
    with rt.db.session() as s:
        client = admin.add_client(s, now(), "demo-client", "demo-client-secret").id
    specs = {}
    contents = {}
    for i, p in enumerate(pairs):
        spec = WorkerSpec.parse(f"{p.application}|{p.version}|{p.doctype}|pdf")
        specs[p] = spec
        with rt.db.session() as s:
            admin.add_factory(s, now(), f"factory-{i + 1}", f"factory-secret-{i + 1}", [spec])
            contents[p] = submission.upload(
                s, now(), client_id=client, filename=f"sample.{p.doctype}", parts=b"PK demo document", max_bytes=10**6
            )
    in_flight: dict[Pair, list] = {p: [] for p in pairs}  # claimed in an earlier minute, still converting

    def end(p: Pair, c) -> None:  # type: ignore[no-untyped-def]
        with rt.db.session() as s:
            if rng.random() < p.fail_rate:
                leases.fail(s, now(), rt.policy, rt.notifier, rt.mirror, guid=c.guid, owner=f"factory-{pairs.index(p) + 1}",
                          token=c.lease_token, reason="conversion failed: document could not be loaded")
            else:
                leases.finish(s, now(), rt.notifier, guid=c.guid, owner=f"factory-{pairs.index(p) + 1}", token=c.lease_token,
                            fmt="pdf", parts=b"%PDF-1.4 demo", max_bytes=10**6)

    for m in range(minutes):
        clock.advance(2)
        for p in pairs:
            with rt.db.session() as s:
                for _ in range(_poisson(rng, p.arrivals(m) * scale)):
                    submission.submit(s, now(), rt.mirror, client_id=client, content=contents[p], application=p.application,
                                version=p.version, fmt="pdf", max_attempts=1, no_cache=True)
        clock.advance(20)
        for p in pairs:
            if m in p.down:
                continue
            for c in in_flight[p]:
                end(p, c)
            in_flight[p] = []
            for _ in range(max(1, round(p.capacity * scale))):
                with rt.db.session() as s:
                    c = claims.claim(s, now(), rt.policy, owner=f"factory-{pairs.index(p) + 1}", workers=[specs[p]])
                if c is None:
                    break
                if rng.random() < 0.7:
                    end(p, c)
                else:
                    in_flight[p].append(c)
        clock.advance(60 - 22)
        with rt.db.session() as s:
            trends.record_snapshot(s, now())


def serve(rt):  # type: ignore[no-untyped-def]
    """The real WSGI app on a loopback port, in a thread: (url, stop)."""
    from werkzeug.serving import make_server

    from app.web import create_app

    server = make_server("127.0.0.1", 0, create_app(rt), threaded=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}", server.shutdown


def capture(browser, url: str, out: Path, *, window: str = "hour", width: int = 1480) -> None:  # type: ignore[no-untyped-def]
    """Screenshot the trends section of /ops (header included) into `out`."""
    ctx = browser.new_context(
        http_credentials={"username": OPERATOR[0], "password": OPERATOR[1]},
        viewport={"width": width, "height": 900},
        device_scale_factor=1,
    )
    page = ctx.new_page()
    page.goto(f"{url}/ops?trend={window}")
    page.locator("#trends svg.chart").first.wait_for()
    box = page.locator("#trends").bounding_box()
    assert box is not None
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), clip={"x": 0, "y": 0, "width": width, "height": box["y"] + box["height"] + 12})
    ctx.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "ops-trends.png")
    ap.add_argument("--window", choices=("hour", "day"), default="hour")
    ap.add_argument("--minutes", type=int, default=60)
    ap.add_argument("--chromium", default=CHROMIUM)
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from app.config import Settings
    from app.db.migrate import upgrade
    from app.runtime import build_runtime

    with tempfile.TemporaryDirectory(prefix="convhub-trends-") as tmp:
        url = f"sqlite:///{tmp}/convhub.db"
        upgrade(url)
        settings = Settings(
            data_dir=Path(tmp), database_url=url, operator_user=OPERATOR[0], operator_password=OPERATOR[1], max_attempts=1
        )
        clock = Clock(START)
        rt = build_runtime(settings, clock=clock, broker=False)
        try:
            simulate(rt, clock, minutes=args.minutes)
            clock.advance(25)  # the page is looked at mid-minute
            base, stop = serve(rt)
            try:
                with sync_playwright() as pw:
                    browser = pw.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS, headless=True)
                    capture(browser, base, args.out, window=args.window)
                    browser.close()
            finally:
                stop()
        finally:
            rt.close()
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
