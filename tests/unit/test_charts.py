"""app/web/charts.py: the SVG is well-formed XML, has one point per recorded value, escapes all text."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from app.web import charts

NS = {"svg": charts.SVG_NS}
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
EVIL = '<script>alert("x")</script> & \'quoted\''


def minutes(n: int, start: datetime = T0) -> list[datetime]:
    return [start + timedelta(minutes=i + 1) for i in range(n)]


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)  # raises on anything that is not well-formed XML
    assert root.tag == f"{{{charts.SVG_NS}}}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{{{charts.SVG_NS}}}text")]


def test_one_point_per_recorded_value_with_a_tooltip_each() -> None:
    times = minutes(60)
    backlog = [float(i % 7) for i in range(60)]
    in_flight: list[float | None] = [1.0] * 60
    in_flight[10:15] = [None] * 5  # five unrecorded minutes: a gap
    svg = charts.line_chart(
        "Backlog",
        times,
        [charts.Line("queued", backlog, charts.BLUE), charts.Line("in flight", in_flight, charts.AMBER, dashed=True)],
        unit="jobs",
    )
    root = parse(svg)
    series = {g.get("data-series"): g for g in root.iterfind("svg:g[@class='series']", NS)}
    assert set(series) == {"queued", "in flight"}
    queued_points = series["queued"].findall("svg:circle", NS)
    assert len(queued_points) == 60
    assert len(series["in flight"].findall("svg:circle", NS)) == 55
    # The gap splits the in-flight line in two; the queued line is one.
    assert len(series["queued"].findall("svg:polyline", NS)) == 1
    assert len(series["in flight"].findall("svg:polyline", NS)) == 2
    # Every point says when, what and how much.
    titles = [c.find("svg:title", NS).text for c in queued_points]  # type: ignore[union-attr]
    assert titles[0] == "12:01 UTC · queued: 0 jobs"
    assert titles[3] == "12:04 UTC · queued: 3 jobs"
    assert root.find("svg:title", NS).text == "Backlog (jobs)"  # type: ignore[union-attr]
    # The points rise with the value: a larger value is drawn higher (smaller y).
    ys = [float(c.get("cy")) for c in queued_points]  # type: ignore[arg-type]
    assert ys[6] < ys[3] < ys[0]


def test_axes_have_round_labels() -> None:
    svg = charts.line_chart("Completions", minutes(60), [charts.Line("completed", [7.0] * 60, charts.GREEN)])
    root = parse(svg)
    y_labels = texts(root.find("svg:g[@class='y-axis']", NS))  # type: ignore[arg-type]
    assert y_labels == ["0", "2", "4", "6", "8"]
    x_labels = texts(root.find("svg:g[@class='x-axis']", NS))  # type: ignore[arg-type]
    assert x_labels == ["12:10", "12:20", "12:30", "12:40", "12:50", "13:00"]


def test_a_day_is_labelled_by_hours_and_dates_and_tooltips_name_the_step() -> None:
    start = datetime(2026, 1, 1, 13, 0, tzinfo=UTC)
    step = timedelta(minutes=10)
    times = [start + step * (i + 1) for i in range(144)]
    svg = charts.line_chart("Failures", times, [charts.Line("failed", [0.5] * 144, charts.RED)], step=step, unit="per min")
    root = parse(svg)
    x_labels = texts(root.find("svg:g[@class='x-axis']", NS))  # type: ignore[arg-type]
    assert x_labels == ["16:00", "20:00", "02 Jan", "04:00", "08:00", "12:00"]
    first = root.find("svg:g[@class='series']/svg:circle/svg:title", NS)
    assert first is not None and first.text == "01 Jan 13:00–13:10 UTC · failed: 0.5 per min"
    assert len(root.findall("svg:g[@class='series']/svg:circle", NS)) == 144


@pytest.mark.parametrize(
    "times, values",
    [([], []), (minutes(60), [None] * 60)],
    ids=["no times", "nothing recorded"],
)
def test_empty_data_says_no_data_yet(times, values) -> None:  # type: ignore[no-untyped-def]
    root = parse(charts.line_chart("Backlog", times, [charts.Line("queued", values, charts.BLUE)]))
    assert root.findall(".//svg:circle", NS) == []
    no_data = root.find("svg:text[@class='no-data']", NS)
    assert no_data is not None and no_data.text == "no data yet"
    spark = parse(charts.sparkline("x backlog", values, color=charts.BLUE))
    assert spark.find("svg:text[@class='no-data']", NS) is not None


def test_a_single_point_is_drawn() -> None:
    root = parse(charts.line_chart("Backlog", minutes(1), [charts.Line("queued", [3.0], charts.BLUE)]))
    assert len(root.findall(".//svg:circle", NS)) == 1
    assert root.findall(".//svg:polyline", NS) == []


def test_all_text_is_escaped() -> None:
    svg = charts.line_chart(
        EVIL,
        minutes(3),
        [charts.Line(EVIL, [1.0, 2.0, 3.0], charts.BLUE), charts.Line("second", [1.0, 1.0, 1.0], charts.RED)],
        unit=EVIL,
    )
    assert "<script" not in svg
    root = parse(svg)
    # The text survives, as text: the title, the legend, the unit and every tooltip carry it.
    assert root.find("svg:title", NS).text == f"{EVIL} ({EVIL})"  # type: ignore[union-attr]
    assert root.get("aria-label") == f"{EVIL} ({EVIL})"
    assert EVIL in texts(root)
    assert root.find("svg:text/svg:tspan", NS).text == f" · {EVIL}"  # type: ignore[union-attr]
    series = next(g for g in root.iterfind("svg:g[@class='series']", NS) if g.get("data-series") == EVIL)
    tips = [c.find("svg:title", NS).text for c in series.findall("svg:circle", NS)]  # type: ignore[union-attr]
    assert tips[2] == f"12:03 UTC · {EVIL}: 3 {EVIL}"
    spark = charts.sparkline(EVIL, [1.0, None, 2.0], color=charts.BLUE, unit=EVIL)
    assert "<script" not in spark
    assert parse(spark).find("svg:title", NS).text.startswith(EVIL)  # type: ignore[union-attr]


def test_a_colour_cannot_break_out_of_its_attribute() -> None:
    svg = charts.line_chart("x", minutes(2), [charts.Line("a", [1.0, 2.0], '"/><script>alert(1)</script>')])
    assert "<script" not in svg
    parse(svg)


def test_sparkline_summary_and_gaps() -> None:
    root = parse(charts.sparkline("Writer 7.4 completions", [1.0, 4.0, None, 2.0, 3.0], color=charts.GREEN, unit="per min"))
    assert root.find("svg:title", NS).text == "Writer 7.4 completions: latest 3 per min, peak 4 per min"  # type: ignore[union-attr]
    assert len(root.findall("svg:polyline", NS)) == 2  # broken at the gap
    assert len(root.findall("svg:circle", NS)) == 1  # the latest value is marked


@pytest.mark.parametrize(
    "top, expected",
    [(0.0, (1.0, 0.5)), (0.3, (1.0, 0.5)), (1.0, (1.0, 0.5)), (3.0, (3.0, 1.0)), (7.0, (8.0, 2.0)),
     (38.0, (40.0, 10.0)), (1234.0, (1500.0, 500.0))],
)
def test_nice_ceiling(top: float, expected: tuple[float, float]) -> None:
    assert charts.nice_ceiling(top) == expected


def test_format_value() -> None:
    assert [charts.format_value(v) for v in (0, 12, 2.5, 1 / 3, 12.34, 1234)] == ["0", "12", "2.5", "0.33", "12.3", "1,234"]
