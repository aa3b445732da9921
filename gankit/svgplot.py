"""Line charts as inline SVG text, for ``gankit report``: crisp at any zoom, a few kB, no plotting library,
nothing fetched. Every name drawn is escaped, since it may come from a run's files."""
from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape
from typing import Sequence

from gankit.plots import _label as tick_label
from gankit.plots import _nice_ticks as nice_ticks

WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 30, 40
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]
    colour: str
    width: float = 2.0
    opacity: float = 1.0


@dataclass(frozen=True)
class Marker:
    """A vertical line at ``step`` (an event on the timeline) or, with ``value``, a point (e.g. the best)."""

    step: float
    label: str
    colour: str
    value: float | None = None


class Frame:
    """The data ranges and the mapping from data to SVG coordinates."""

    def __init__(self, series: Sequence[Series], markers: Sequence[Marker]) -> None:
        xs = [x for s in series for x, _ in s.points] + [m.step for m in markers]
        ys = [y for s in series for _, y in s.points] + [m.value for m in markers if m.value is not None]
        self.x_low, self.x_high = _span(min(xs), max(xs))
        y_low, y_high = _span(min(ys), max(ys))
        pad = (y_high - y_low) * 0.05
        self.y_low, self.y_high = y_low - pad, y_high + pad

    def x(self, value: float) -> float:
        return LEFT + (value - self.x_low) / (self.x_high - self.x_low) * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        return TOP + (self.y_high - value) / (self.y_high - self.y_low) * (HEIGHT - TOP - BOTTOM)


def _span(low: float, high: float) -> tuple[float, float]:
    return (low - 0.5, high + 0.5) if high == low else (low, high)


def _finite_points(points) -> list[tuple[float, float]]:
    return [(float(x), float(y)) for x, y in points if math.isfinite(x) and math.isfinite(y)]


def line_chart(series: Sequence[Series], *, title: str, markers: Sequence[Marker] = (), x_label: str = "step",
               legend: bool = True) -> str:
    """An SVG line chart of ``series`` with axes, ticks, ``markers`` and (``legend``) a legend of the series
    names; a short note when no series has a finite point."""
    series = [Series(s.name, _finite_points(s.points), s.colour, s.width, s.opacity) for s in series]
    series = [s for s in series if s.points]
    if not series:
        return f'<p class="missing">{escape(title)}: nothing logged</p>'
    markers = [m for m in markers if math.isfinite(m.step) and (m.value is None or math.isfinite(m.value))]
    frame = Frame(series, markers)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
        f'aria-label="{escape(title)}">',
        f'<text x="{LEFT}" y="18" class="title">{escape(title)}</text>',
        *_axes(frame, x_label),
        *(_polyline(frame, s) for s in series),
        *(_marker(frame, m) for m in markers),
        *(_legend(series) if legend else ()),
        "</svg>",
    ]
    return "\n".join(parts)


def _axes(frame: Frame, x_label: str) -> list[str]:
    parts = []
    for tick in nice_ticks(frame.y_low, frame.y_high):
        y = frame.y(tick)
        parts.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick_label(tick)}</text>')
    for tick in nice_ticks(frame.x_low, frame.x_high):
        x = frame.x(tick)
        parts.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM}" class="grid"/>')
        parts.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{tick_label(tick)}</text>')
    parts.append(f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" height="{HEIGHT - TOP - BOTTOM}" class="frame"/>')
    parts.append(f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(x_label)}</text>')
    return parts


def _polyline(frame: Frame, series: Series) -> str:
    if len(series.points) == 1:
        (x, y), = series.points
        return f'<circle cx="{frame.x(x):.1f}" cy="{frame.y(y):.1f}" r="3" fill="{series.colour}"/>'
    coordinates = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in series.points)
    return (f'<polyline points="{coordinates}" fill="none" stroke="{series.colour}" '
            f'stroke-width="{series.width}" stroke-opacity="{series.opacity}"><title>{escape(series.name)}</title></polyline>')


def _marker(frame: Frame, marker: Marker) -> str:
    x = frame.x(marker.step)
    label = escape(marker.label)
    if marker.value is not None:
        y = frame.y(marker.value)
        return (f'<g class="marker"><circle cx="{x:.1f}" cy="{y:.1f}" r="6" fill="none" stroke="{marker.colour}" '
                f'stroke-width="2.5"/><text x="{x + 9:.1f}" y="{y - 8:.1f}" fill="{marker.colour}">{label}</text>'
                f"<title>{label}</title></g>")
    return (f'<g class="marker"><line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM}" stroke="{marker.colour}" '
            f'stroke-dasharray="4 3" stroke-width="1.5"/><text x="{x + 3:.1f}" y="{HEIGHT - BOTTOM - 5}" fill="{marker.colour}">'
            f"{label}</text><title>{label}</title></g>")


def _legend(series: Sequence[Series]) -> list[str]:
    parts = []
    x = WIDTH - RIGHT - 170
    for index, s in enumerate(series[:12]):
        y = TOP + 14 + index * 15
        parts.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 20}" y2="{y - 4}" stroke="{s.colour}" stroke-width="3"/>')
        parts.append(f'<text x="{x + 25}" y="{y}">{escape(s.name[:28])}</text>')
    return parts


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]
