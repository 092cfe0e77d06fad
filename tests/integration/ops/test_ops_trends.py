"""The trends section of /ops and /ops/trends: operator-only, charts as escaped inline SVG, selectors."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from lxml import html as lxml_html

from app.web import create_app
from app.web.charts import SVG_NS
from tests.conftest import add_client, submit_job
from tests.integration.ops.conftest import OPERATOR_HEADERS
from tests.trendkit import CALC_SPEC, claim, fail, finish, record

EVIL = '<script>alert("x")</script>&<img src=x onerror=alert(1)>'
NS = {"svg": SVG_NS}


def section(client, query: str = "", path: str = "/ops", **kw):  # type: ignore[no-untyped-def]
    """The trends section of the page (lxml) and the page's text."""
    resp = client.get(path + query, headers=OPERATOR_HEADERS, **kw)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    text = resp.get_data(as_text=True)
    return lxml_html.fromstring(text).get_element_by_id("trends"), text


def charts_of(text: str) -> list[ET.Element]:
    """The main charts of a page, each parsed on its own as XML (as an SVG file would be)."""
    return [ET.fromstring(svg) for svg in re.findall(r"<svg [^>]*class=\"chart\".*?</svg>", text, re.S)]


def points(chart: ET.Element, series: str) -> int:
    return sum(
        len(g.findall("svg:circle", NS)) for g in chart.iterfind("svg:g[@class='series']", NS) if g.get("data-series") == series
    )


def simulate(rt, clock, client: int, minutes: int) -> None:  # type: ignore[no-untyped-def]
    """Each minute: two Writer jobs and one Calc job arrive; one Writer job completes, one Calc fails."""
    for _ in range(minutes):
        submit_job(rt, client)
        submit_job(rt, client)
        submit_job(rt, client, filename="s.ods", application="LibreOffice Calc", version="7.4")
        finish(rt, claim(rt))
        fail(rt, claim(rt, CALC_SPEC))
        clock.advance(60)
        record(rt)


def test_before_any_snapshot_every_chart_says_no_data_yet(ops_rt) -> None:  # type: ignore[no-untyped-def]
    client = create_app(ops_rt).test_client()
    sec, html = section(client)
    charts = charts_of(html)
    assert [c.find("svg:title", NS).text for c in charts] == ["Backlog (jobs)", "Completions (per min)", "Failures (per min)"]  # type: ignore[union-attr]
    for c in charts:
        assert c.find("svg:text[@class='no-data']", NS).text == "no data yet"  # type: ignore[union-attr]
    assert "No snapshot yet" in html
    assert sec.find_class("trend-pairs") == []


def test_the_last_hour_overall_and_per_pair(make_runtime, clock) -> None:  # type: ignore[no-untyped-def]
    from tests.integration.ops.conftest import OPERATOR

    rt = make_runtime(operator_user=OPERATOR[0], operator_password=OPERATOR[1], max_attempts=1)
    client = create_app(rt).test_client()
    cid = add_client(rt)
    simulate(rt, clock, cid, 20)

    sec, html = section(client)
    backlog, completed, failed = charts_of(html)
    assert points(backlog, "queued") == 20 and points(backlog, "in flight") == 20
    assert points(completed, "completed") == 20 and points(failed, "failed") == 20
    # Overall: the backlog grows by one per minute (two in, one completed, one Calc in and failed).
    assert sec.get_element_by_id("trend-backlog").text == "20"
    assert sec.get_element_by_id("trend-completed").text == "20"
    assert sec.get_element_by_id("trend-failed").text == "20"
    rows = {r.get("data-trend-pair"): r for r in sec.find_class("trend-pairs")[0].iter("tr") if r.get("data-trend-pair")}
    assert set(rows) == {"LibreOffice Calc|7.4", "LibreOffice Writer|7.4"}
    assert len(rows["LibreOffice Writer|7.4"].find_class("sparkline")) == 3

    # One pair: the selector narrows every chart and figure to it.
    sec, _ = section(client, "?pair=LibreOffice+Calc|7.4")
    assert sec.get("data-pair") == "LibreOffice Calc|7.4"
    assert sec.get_element_by_id("trend-backlog").text == "0"
    assert sec.get_element_by_id("trend-completed").text == "0"
    assert sec.get_element_by_id("trend-failed").text == "20"
    selected = sec.get_element_by_id("trend-pair").value
    assert selected == "LibreOffice Calc|7.4"

    # The last day, in ten-minute steps: snapshots 12:01-12:20 fall in two steps.
    sec, html = section(client, "?trend=day")
    assert sec.get("data-window") == "day"
    backlog, completed, _failed = charts_of(html)
    assert points(backlog, "queued") == 2 and points(completed, "completed") == 2
    titles = [c.find("svg:title", NS).text for c in backlog.iterfind("svg:g[@data-series='queued']/svg:circle", NS)]  # type: ignore[union-attr]
    assert titles == ["01 Jan 12:00–12:10 UTC · queued: 10 jobs", "01 Jan 12:10–12:20 UTC · queued: 20 jobs"]

    # An unknown pair falls back to all applications and says so.
    sec, html = section(client, "?pair=Nope|1")
    assert sec.get("data-pair") == "" and "showing all applications" in html

    # The section alone (what trends.js re-fetches) is the same section.
    alone, _ = section(client, "?pair=LibreOffice+Calc|7.4", path="/ops/trends")
    assert alone.get("data-pair") == "LibreOffice Calc|7.4"


def test_a_new_minute_shows_without_a_restart(ops_rt, clock) -> None:  # type: ignore[no-untyped-def]
    client = create_app(ops_rt).test_client()
    cid = add_client(ops_rt)
    submit_job(ops_rt, cid)
    clock.advance(60)
    record(ops_rt)
    assert points(charts_of(section(client)[1])[0], "queued") == 1
    assert points(charts_of(section(client)[1])[0], "queued") == 1  # served from the cache
    clock.advance(60)
    record(ops_rt)
    assert points(charts_of(section(client)[1])[0], "queued") == 2


def test_the_section_is_operator_only_and_escaped(ops_rt, clock) -> None:  # type: ignore[no-untyped-def]
    client = create_app(ops_rt).test_client()
    assert client.get("/ops/trends").status_code == 401
    cid = add_client(ops_rt)
    submit_job(ops_rt, cid, application=EVIL, version="1<b>")
    clock.advance(60)
    record(ops_rt)
    for args in ({}, {"pair": f"{EVIL}|1<b>"}, {"trend": "<script>", "pair": "<i>x</i>"}):
        sec, html = section(client, path="/ops/trends", query_string=args)
        assert EVIL not in html and "<b>" not in html and "<i>x</i>" not in html and "<script>" not in html
        assert "&lt;script&gt;" in html
        assert len(charts_of(html)) == 3  # the charts are XML, whatever the names were
    sec, html = section(client, path="/ops/trends", query_string={"pair": f"{EVIL}|1<b>"})
    assert sec.get("data-pair") == f"{EVIL}|1<b>"  # selected; the attribute escaped, and read back intact
    assert next(sec.find_class("trend-pairs")[0].iter("a")).text == EVIL
    assert sec.get_element_by_id("trend-pair").value == f"{EVIL}|1<b>"


def test_the_pages_own_background_refresh_skips_the_charts(ops_rt, clock) -> None:  # type: ignore[no-untyped-def]
    # ops.js re-fetches /ops every few seconds and keeps only #live: the charts are not drawn for it.
    client = create_app(ops_rt).test_client()
    submit_job(ops_rt, add_client(ops_rt))
    clock.advance(60)
    record(ops_rt)
    fetched = client.get("/ops", headers={**OPERATOR_HEADERS, "Sec-Fetch-Dest": "empty"}).get_data(as_text=True)
    assert 'id="live"' in fetched and 'id="trends"' not in fetched and "<svg" not in fetched
    navigated = client.get("/ops", headers={**OPERATOR_HEADERS, "Sec-Fetch-Dest": "document"}).get_data(as_text=True)
    assert 'id="live"' in navigated and len(charts_of(navigated)) == 3
    # trends.js's own fetch of the section is a fetch too, and gets it.
    alone = client.get("/ops/trends", headers={**OPERATOR_HEADERS, "Sec-Fetch-Dest": "empty"}).get_data(as_text=True)
    assert len(charts_of(alone)) == 3
