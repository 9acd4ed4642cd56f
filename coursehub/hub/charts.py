"""Small inline SVG charts for the status page: no JavaScript, no CDN, every label escaped (pure)."""

from __future__ import annotations

import html
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
FAIL = "#d62728"
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 48, 12, 28, 30
Point = tuple[float, float]  # (Unix time, value)


@dataclass(frozen=True)
class Frame:
    """The plotting area of one chart and its scales."""

    width: int
    height: int
    t0: float
    t1: float
    y_max: float
    divisions: int = 5

    def x(self, t: float) -> float:
        span = max(self.t1 - self.t0, 1e-9)
        return MARGIN_LEFT + (t - self.t0) / span * (self.width - MARGIN_LEFT - MARGIN_RIGHT)

    def y(self, value: float) -> float:
        inner = self.height - MARGIN_TOP - MARGIN_BOTTOM
        return MARGIN_TOP + inner - value / max(self.y_max, 1e-9) * inner


def nice_max(value: float) -> float:
    """A round number at or above `value` (1, 2, 5 × 10^n), for the top of an axis."""
    if value <= 0:
        return 1.0
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * exponent * (1 + 1e-9):
            return float(step * exponent)
    return float(10 * exponent)


def axis(value: float, counts: bool = False) -> tuple[float, int]:
    """(top, divisions) of a y axis whose ticks are round numbers (whole ones for counts)."""
    top = max(nice_max(value), 5.0) if counts else nice_max(value)
    leading = round(top / 10 ** math.floor(math.log10(top)))
    return top, 4 if leading == 2 else 5


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _number(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"


def _open(frame: Frame, title: str, label: str) -> list[str]:
    """The <svg> element, its title and the axes with ticks (time along x, values along y)."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_esc(title)}" '
        f'width="{frame.width}" height="{frame.height}" viewBox="0 0 {frame.width} {frame.height}" '
        'font-family="sans-serif" font-size="11">',
        f"<title>{_esc(title)}</title>",
        f'<text x="{MARGIN_LEFT}" y="16" font-size="13" font-weight="bold">{_esc(title)}</text>',
    ]
    bottom, right = frame.height - MARGIN_BOTTOM, frame.width - MARGIN_RIGHT
    for i in range(frame.divisions + 1):
        value = frame.y_max * i / frame.divisions
        y = frame.y(value)
        parts.append(f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{MARGIN_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{_number(value)}</text>')
    for i in range(5):
        t = frame.t0 + (frame.t1 - frame.t0) * i / 4
        x = frame.x(t)
        stamp = time.strftime("%H:%M", time.localtime(t))
        parts.append(f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle">{stamp}</text>')
    parts.append(
        f'<polyline points="{MARGIN_LEFT},{MARGIN_TOP} {MARGIN_LEFT},{bottom} {right},{bottom}" '
        'fill="none" stroke="#888"/>'
    )
    parts.append(
        f'<text x="12" y="{(MARGIN_TOP + bottom) / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {(MARGIN_TOP + bottom) / 2:.0f})">{_esc(label)}</text>'
    )
    return parts


def _legend(frame: Frame, names: Sequence[str], colors: Sequence[str]) -> list[str]:
    parts, x = [], frame.width - MARGIN_RIGHT
    for name, color in reversed(list(zip(names, colors, strict=True))):
        x -= 14 + 7 * len(name)
        parts.append(f'<rect x="{x}" y="8" width="10" height="10" fill="{color}"/>')
        parts.append(f'<text x="{x + 13}" y="17">{_esc(name)}</text>')
    return parts


def line_chart(
    series: Mapping[str, Sequence[Point]],
    t0: float,
    t1: float,
    title: str,
    label: str,
    width: int = 640,
    height: int = 220,
) -> str:
    """Step lines of several counts over [t0, t1]; an empty chart says there is no data yet."""
    values = [v for points in series.values() for _, v in points]
    frame = Frame(width, height, t0, t1, *axis(max(values, default=0), counts=True))
    parts = _open(frame, title, label)
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(series))]
    for (_, points), color in zip(series.items(), colors, strict=True):
        if not points:
            continue
        coords = []
        for i, (t, v) in enumerate([*points, (t1, points[-1][1])]):  # the last value holds until now
            if i:
                coords.append(f"{frame.x(t):.1f},{frame.y(points[i - 1][1]):.1f}")
            coords.append(f"{frame.x(t):.1f},{frame.y(v):.1f}")
        parts.append(f'<polyline points="{" ".join(coords)}" fill="none" stroke="{color}" stroke-width="2"/>')
    if not values:
        parts.append(_no_data(frame))
    parts += _legend(frame, list(series), colors)
    parts.append("</svg>")
    return "".join(parts)


def scatter_chart(
    points: Sequence[tuple[float, float, bool]],
    t0: float,
    t1: float,
    title: str,
    label: str,
    width: int = 640,
    height: int = 220,
) -> str:
    """One dot per (time, seconds, ok): successes blue dots, failures red crosses."""
    frame = Frame(width, height, t0, t1, *axis(max((v for _, v, _ in points), default=0)))
    parts = _open(frame, title, label)
    for t, v, ok in points:
        x, y = frame.x(t), frame.y(v)
        if ok:
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{PALETTE[0]}" fill-opacity="0.7"/>'
            )
        else:
            parts.append(
                f'<path d="M{x - 4:.1f},{y - 4:.1f}L{x + 4:.1f},{y + 4:.1f}M{x - 4:.1f},{y + 4:.1f}'
                f'L{x + 4:.1f},{y - 4:.1f}" stroke="{FAIL}" stroke-width="2"/>'
            )
    if not points:
        parts.append(_no_data(frame))
    parts += _legend(frame, ["ok", "failed"], [PALETTE[0], FAIL])
    parts.append("</svg>")
    return "".join(parts)


def usage_bars(rows: Sequence[tuple[str, float, float]], title: str, unit: str, width: int = 640) -> str:
    """Horizontal bars of (label, used, limit): the limit is the full width; red above 90 %."""
    bar, gap, label_width = 16, 6, 200
    height = MARGIN_TOP + len(rows) * (bar + gap) + 8
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_esc(title)}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
        f"<title>{_esc(title)}</title>",
        f'<text x="4" y="16" font-size="13" font-weight="bold">{_esc(title)}</text>',
    ]
    span = width - label_width - 90
    for i, (label, used, limit) in enumerate(rows):
        y = MARGIN_TOP + i * (bar + gap)
        ratio = used / limit if limit else 0.0
        filled = span * min(ratio, 1.0)
        color = FAIL if ratio > 0.9 else PALETTE[2]
        parts.append(f'<text x="{label_width - 6}" y="{y + 12}" text-anchor="end">{_esc(label)}</text>')
        parts.append(f'<rect x="{label_width}" y="{y}" width="{span}" height="{bar}" fill="#eee"/>')
        parts.append(f'<rect x="{label_width}" y="{y}" width="{filled:.1f}" height="{bar}" fill="{color}"/>')
        text = f"{used:.0f} / {limit:.0f} {unit}" if limit else f"{used:.0f} {unit}"
        parts.append(f'<text x="{label_width + span + 6}" y="{y + 12}">{_esc(text)}</text>')
    if not rows:
        parts.append(f'<text x="4" y="{MARGIN_TOP + 12}" fill="#888">no server is running</text>')
    parts.append("</svg>")
    return "".join(parts)


def _no_data(frame: Frame) -> str:
    return (
        f'<text x="{frame.width / 2:.0f}" y="{frame.height / 2:.0f}" text-anchor="middle" '
        'fill="#888">no data yet</text>'
    )
