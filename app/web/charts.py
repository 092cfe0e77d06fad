"""Charts as inline SVG, drawn on the server: pure functions from series to SVG strings.

No script and no third-party library, so the page works offline and under a CSP without
'unsafe-inline': colours are SVG presentation attributes, never style attributes. Every text that
reaches the SVG is escaped. Each point carries a <title> (the browser's tooltip) naming its time,
series and value; an empty chart says "no data yet" instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape

SVG_NS = "http://www.w3.org/2000/svg"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"
INK = "#1f2937"
MUTED = "#6b7280"
GRID = "#e5e7eb"
FRAME = "#d1d5db"
NO_DATA = "no data yet"

# Series colours (readable on white, distinct for the common kinds of colour blindness).
BLUE = "#2563eb"
AMBER = "#d97706"
GREEN = "#15803d"
RED = "#dc2626"

# Candidate spacings of the time axis, smallest first.
_TIME_TICKS = tuple(
    timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 240, 360, 720, 1440)
)


@dataclass(frozen=True)
class Line:
    """One series of a chart: a value (or None: not recorded) per time."""

    name: str
    values: Sequence[float | None]
    color: str
    dashed: bool = False
    area: bool = False  # fill below the line (light)


def _a(value: object) -> str:
    """An attribute value, escaped (quotes included)."""
    return escape(str(value), quote=True)


def _t(value: object) -> str:
    """Text content, escaped."""
    return escape(str(value), quote=False)


def _num(v: float) -> str:
    """A coordinate: short and locale-free."""
    return f"{v:.1f}".rstrip("0").rstrip(".") if v != int(v) else str(int(v))


def format_value(v: float) -> str:
    """12 -> '12', 2.5 -> '2.5', 0.333 -> '0.33', 1234 -> '1,234'."""
    if v == int(v):
        return f"{int(v):,}"
    if abs(v) >= 10:
        return f"{v:,.1f}"
    return f"{v:.2f}".rstrip("0").rstrip(".")


def nice_ceiling(top: float, ticks: int = 4) -> tuple[float, float]:
    """(axis maximum, tick spacing): a round spacing from 1, 2, 2.5, 5 x 10^k with `ticks` steps at most."""
    top = max(top, 1.0)
    raw = top / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        spacing = m * mag
        if spacing * ticks >= top:
            break
    if spacing < 1:  # counts: whole-number ticks, or halves up to 1
        spacing = 0.5 if top <= 1 else 1.0
    steps = math.ceil(top / spacing - 1e-9)
    return steps * spacing, spacing


def time_ticks(start: datetime, end: datetime, most: int = 7) -> list[datetime]:
    """Round times (multiples of a spacing, UTC) within [start, end], at most `most` of them."""
    span = end - start
    spacing = next((s for s in _TIME_TICKS if span / s <= most), _TIME_TICKS[-1])
    midnight = start.replace(hour=0, minute=0, second=0, microsecond=0)
    first = midnight + spacing * math.ceil((start - midnight) / spacing)
    out = []
    t = first
    while t <= end:
        out.append(t)
        t += spacing
    return out


def _time_label(t: datetime, step: timedelta) -> str:
    """What a tooltip says about the point at `t` (the end of a step of `step`)."""
    if step <= timedelta(minutes=1):
        return f"{t:%H:%M} UTC"
    return f"{t - step:%d %b %H:%M}–{t:%H:%M} UTC"


def _svg_open(width: int, height: int, label: str, css_class: str) -> list[str]:
    return [
        f'<svg xmlns="{SVG_NS}" class="{_a(css_class)}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{_a(label)}" font-family="{_a(FONT)}" font-size="11">',
        f"<title>{_t(label)}</title>",
    ]


def line_chart(
    title: str,
    times: Sequence[datetime],
    lines: Sequence[Line],
    *,
    step: timedelta = timedelta(minutes=1),
    unit: str = "",
    width: int = 460,
    height: int = 220,
    empty_text: str = NO_DATA,
) -> str:
    """A time chart of one or more lines: title, legend, y axis with grid lines, UTC time axis.

    `times[i]` is the end of the step that `line.values[i]` describes. A None value is a gap: the
    line breaks there. When no line has a value the chart says `empty_text`.
    """
    left, right, top, bottom = 46, 22, 34, 26
    pw, ph = width - left - right, height - top - bottom
    out = _svg_open(width, height, f"{title} ({unit})" if unit else title, "chart")
    unit_span = f'<tspan font-size="11" font-weight="normal" fill="{MUTED}"> · {_t(unit)}</tspan>' if unit else ""
    out.append(f'<text x="{left}" y="16" font-size="13" font-weight="600" fill="{INK}">{_t(title)}{unit_span}</text>')
    if len(lines) > 1:
        out.extend(_legend(lines, width - right, 16))
    values = [v for line in lines for v in line.values if v is not None]
    out.append(
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#ffffff" stroke="{FRAME}" stroke-width="1"/>'
    )
    if not times or not values:
        out.append(
            f'<text class="no-data" x="{_num(left + pw / 2)}" y="{_num(top + ph / 2 + 4)}" text-anchor="middle" '
            f'font-size="13" fill="{MUTED}">{_t(empty_text)}</text>'
        )
        out.append("</svg>")
        return "".join(out)

    y_max, y_step = nice_ceiling(max(values))

    def y_of(v: float) -> float:
        return top + ph - (v / y_max) * ph

    t0, t1 = times[0], times[-1]
    span = (t1 - t0).total_seconds()

    def x_of(t: datetime) -> float:
        if span <= 0:
            return left + pw / 2
        return left + (t - t0).total_seconds() / span * pw

    # y axis: grid lines and labels
    out.append('<g class="y-axis">')
    k = 0
    while k * y_step <= y_max + 1e-9:
        v = k * y_step
        y = _num(y_of(v))
        if k:
            out.append(f'<line x1="{left}" x2="{left + pw}" y1="{y}" y2="{y}" stroke="{GRID}" stroke-width="1"/>')
        out.append(
            f'<text x="{left - 6}" y="{_num(y_of(v) + 4)}" text-anchor="end" fill="{MUTED}">{_t(format_value(v))}</text>'
        )
        k += 1
    out.append("</g>")

    # x axis: round UTC times; a midnight is labelled with its date
    out.append('<g class="x-axis">')
    for t in time_ticks(t0, t1):
        x = _num(x_of(t))
        label = f"{t:%d %b}" if (t.hour, t.minute) == (0, 0) and span > 3 * 3600 else f"{t:%H:%M}"
        out.append(f'<line x1="{x}" x2="{x}" y1="{top + ph}" y2="{top + ph + 4}" stroke="{FRAME}" stroke-width="1"/>')
        # A label too close to the right edge ends at its tick instead of being cut off.
        anchor = "end" if x_of(t) + 3.5 * len(label) > width - 2 else "middle"
        out.append(f'<text x="{x}" y="{top + ph + 16}" text-anchor="{anchor}" fill="{MUTED}">{_t(label)}</text>')
    out.append("</g>")

    dot = 2.6 if len(times) <= 90 else 1.6
    for line in lines:  # a dashed (secondary) line gets smaller points
        out.extend(_line(line, times, x_of, y_of, top + ph, dot * (0.7 if line.dashed else 1), step, unit))
    out.append("</svg>")
    return "".join(out)


def _legend(lines: Sequence[Line], right_x: int, y: int) -> list[str]:
    out = ['<g class="legend">']
    x = float(right_x)
    for line in reversed(lines):
        text_w = 6.2 * len(line.name)
        x -= text_w
        out.append(f'<text x="{_num(x)}" y="{y}" fill="{INK}">{_t(line.name)}</text>')
        x -= 14
        dash = ' stroke-dasharray="3 2"' if line.dashed else ""
        out.append(
            f'<line x1="{_num(x)}" x2="{_num(x + 10)}" y1="{y - 4}" y2="{y - 4}" stroke="{_a(line.color)}" '
            f'stroke-width="2.5"{dash}/>'
        )
        x -= 12
    out.append("</g>")
    return out


def _segments(line: Line, times: Sequence[datetime]) -> list[list[tuple[datetime, float]]]:
    """The runs of consecutive recorded values (a None breaks the line)."""
    runs: list[list[tuple[datetime, float]]] = [[]]
    for t, v in zip(times, line.values, strict=True):
        if v is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append((t, v))
    return [r for r in runs if r]


def _line(line: Line, times, x_of, y_of, base_y: float, dot: float, step: timedelta, unit: str) -> list[str]:  # type: ignore[no-untyped-def]
    out = [f'<g class="series" data-series="{_a(line.name)}">']
    runs = _segments(line, times)
    color = _a(line.color)
    for run in runs:
        pts = " ".join(f"{_num(x_of(t))},{_num(y_of(v))}" for t, v in run)
        if line.area and len(run) > 1:
            first_x, last_x = _num(x_of(run[0][0])), _num(x_of(run[-1][0]))
            b = _num(base_y)
            out.append(f'<polygon points="{first_x},{b} {pts} {last_x},{b}" fill="{color}" fill-opacity="0.12"/>')
        if len(run) > 1:
            dash = ' stroke-dasharray="5 3"' if line.dashed else ""
            out.append(
                f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2" '
                f'stroke-linejoin="round" stroke-linecap="round"{dash}><title>{_t(line.name)}</title></polyline>'
            )
    suffix = f" {unit}" if unit else ""
    for run in runs:
        for t, v in run:
            out.append(
                f'<circle cx="{_num(x_of(t))}" cy="{_num(y_of(v))}" r="{_num(dot)}" fill="{color}">'
                f"<title>{_t(_time_label(t, step))} · {_t(line.name)}: {_t(format_value(v) + suffix)}</title></circle>"
            )
    out.append("</g>")
    return out


def sparkline(
    name: str, values: Sequence[float | None], *, color: str, width: int = 150, height: int = 34, unit: str = ""
) -> str:
    """A small line without axes for a table cell; its <title> sums it up (latest, peak)."""
    pad = 3
    recorded = [v for v in values if v is not None]
    suffix = f" {unit}" if unit else ""
    if not recorded:
        summary = f"{name}: {NO_DATA}"
    else:
        summary = f"{name}: latest {format_value(recorded[-1])}{suffix}, peak {format_value(max(recorded))}{suffix}"
    out = _svg_open(width, height, summary, "sparkline")
    out.append(f'<line x1="0" x2="{width}" y1="{height - pad}" y2="{height - pad}" stroke="{GRID}" stroke-width="1"/>')
    if not recorded:
        out.append(
            f'<text class="no-data" x="{width / 2:g}" y="{height / 2 + 4:g}" text-anchor="middle" fill="{MUTED}">'
            f"{_t(NO_DATA)}</text></svg>"
        )
        return "".join(out)
    top = max(max(recorded), 1.0)
    n = len(values)

    def x_of(i: int) -> float:
        return pad + (i / (n - 1) * (width - 2 * pad) if n > 1 else (width - 2 * pad) / 2)

    def y_of(v: float) -> float:
        return height - pad - v / top * (height - 2 * pad)

    run: list[str] = []
    last = None
    for i, v in enumerate([*values, None]):
        if v is None:
            if len(run) > 1:
                out.append(
                    f'<polyline points="{" ".join(run)}" fill="none" stroke="{_a(color)}" stroke-width="1.6" '
                    'stroke-linejoin="round"/>'
                )
            run = []
            continue
        run.append(f"{_num(x_of(i))},{_num(y_of(v))}")
        last = (i, v)
    if last is not None:
        out.append(f'<circle cx="{_num(x_of(last[0]))}" cy="{_num(y_of(last[1]))}" r="2.2" fill="{_a(color)}"/>')
    out.append("</svg>")
    return "".join(out)
