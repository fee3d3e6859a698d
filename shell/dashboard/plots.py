"""Bar charts drawn on the server as inline SVG (no script, no style attributes: the dashboard's
stylesheet colours them). Every text that goes in is escaped."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 8, 12, 30
MAX_X_LABELS = 12


@dataclass(frozen=True)
class Bar:
    label: str  # under the bar (some are left out when there are many)
    value: float
    note: str = ""  # in the bar's tooltip after the value


def _num(value: float) -> str:
    return f"{value:.1f}"


def bar_chart(
    bars: Sequence[Bar],
    title: str,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
    peak: float | None = None,
) -> Markup:
    """A vertical bar chart with a scale at 0, half and the top (`peak`, default the largest value)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top_value = peak if peak is not None else max((b.value for b in bars), default=0.0)
    top_value = top_value if top_value > 0 else 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h * (1 - fraction)
        parts.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{_num(y)}" y2="{_num(y)}"/>'
            f'<text class="scale" x="{LEFT - 6}" y="{_num(y + 4)}" text-anchor="end">'
            f"{escape(fmt(top_value * fraction))}</text>"
        )
    slot = plot_w / max(len(bars), 1)
    every = max(math.ceil(len(bars) / MAX_X_LABELS), 1)
    for i, bar in enumerate(bars):
        height = plot_h * min(max(bar.value, 0.0) / top_value, 1.0)
        x = LEFT + i * slot + slot * 0.15
        tip = f"{bar.label}: {fmt(bar.value)}" + (f" ({bar.note})" if bar.note else "")
        width = _num(max(slot * 0.7, 1.0))
        parts.append(
            f'<rect class="bar" x="{_num(x)}" y="{_num(TOP + plot_h - height)}" width="{width}" '
            f'height="{_num(height)}"><title>{escape(tip)}</title></rect>'
        )
        if i % every == 0:
            parts.append(
                f'<text class="label" x="{_num(LEFT + i * slot + slot / 2)}" y="{HEIGHT - 10}" '
                f'text-anchor="middle">{escape(bar.label)}</text>'
            )
    if not bars or all(b.value <= 0 for b in bars):
        parts.append(
            f'<text class="empty" x="{LEFT + plot_w / 2:.1f}" y="{TOP + plot_h / 2:.1f}" '
            'text-anchor="middle">nothing yet</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - built from escaped text and numbers only
