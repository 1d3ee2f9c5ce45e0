"""A small SVG bar chart, written as text: a picture of the report without a plotting library."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 640, 320
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 16, 40, 32
GRID_LINES = 4
BAR_COLOUR, GRID_COLOUR, TEXT_COLOUR = "#1f5fbf", "#d9dee6", "#1d2430"


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 times a power of ten at or above `value`: round numbers on the
    axis."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


def bar_chart(title: str, bars: Sequence[tuple[str, Decimal]]) -> str:
    """An accessible SVG document: a bar per (label, value), value gridlines, and the title and the
    figures as text (a <title> per bar, which browsers show on hover)."""
    top = nice_ceiling(float(max((value for _, value in bars), default=0)))
    plot_width, plot_height = (
        WIDTH - MARGIN_LEFT - MARGIN_RIGHT,
        HEIGHT - MARGIN_TOP - MARGIN_BOTTOM,
    )
    slot = plot_width / max(len(bars), 1)
    baseline = MARGIN_TOP + plot_height
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" '
        f'height="{HEIGHT}"'
        ' role="img" aria-labelledby="chart-title" font-family="system-ui, sans-serif" '
        'font-size="12"'
        f' fill="{TEXT_COLOUR}">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{MARGIN_LEFT}" y="24" font-size="15" font-weight="600">{escape(title)}</text>',
    ]
    for line in range(GRID_LINES + 1):
        value = top * line / GRID_LINES
        y = baseline - plot_height * line / GRID_LINES
        parts.append(
            f'<line x1="{MARGIN_LEFT}" x2="{WIDTH - MARGIN_RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID_COLOUR}"/>'
            f'<text x="{MARGIN_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">{value:,.0f}</text>'
        )
    for index, (label, value) in enumerate(bars):
        bar_height = plot_height * float(value) / top
        x = MARGIN_LEFT + slot * index + slot * 0.15
        parts.append(
            f'<rect x="{x:.1f}" y="{baseline - bar_height:.1f}" width="{slot * 0.7:.1f}" '
            f'height="{bar_height:.1f}"'
            f' fill="{BAR_COLOUR}"><title>{escape(f"{label}: {value:,.2f}")}</title></rect>'
            f'<text x="{x + slot * 0.35:.1f}" y="{baseline + 18}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
