"""A balance over time as an inline SVG, drawn on the server (no JavaScript library).

The balance only changes when an entry is posted, so it is drawn as a step line: flat
until the next entry, then straight up or down to the balance after it. The SVG scales
with its ``viewBox``; its ``<title>`` says in words what it shows, for screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 100, 16, 24, 30


@dataclass(frozen=True, slots=True)
class Step:
    at: datetime
    balance_minor: int  # after the entry posted at ``at``


def nice_ticks(low: int, high: int, count: int = 4) -> list[int]:
    """Round values (1, 2 or 5 times a power of ten) spanning ``low``..``high``."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    step = max(int(step), 1)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 0.001:
        ticks.append(int(value))
        value += step
    if ticks[-1] < high:
        ticks.append(ticks[-1] + step)
    return ticks


def balance_chart(
    steps: Sequence[Step],
    *,
    start: datetime,
    end: datetime,
    opening_minor: int,
    amount_label: Callable[[int], str],
    date_label: Callable[[datetime], str],
    title: str,
    caption: str = "",
    chart_id: str = "balance-chart",
) -> Markup:
    """The SVG of a balance from ``start`` (at ``opening_minor``) through ``steps`` to ``end``.

    ``caption`` names the amounts' unit above the amount axis (when the labels do not).
    """
    values = [opening_minor, *(s.balance_minor for s in steps)]
    low, high = min(0, *values), max(0, *values)
    ticks = nice_ticks(low, high)
    low, high = ticks[0], ticks[-1]
    span_t = max((end - start).total_seconds(), 1.0)
    plot_w = WIDTH - LEFT - RIGHT
    plot_h = HEIGHT - TOP - BOTTOM

    def x(moment: datetime) -> float:
        seconds = min(max((moment - start).total_seconds(), 0.0), span_t)
        return round(LEFT + plot_w * seconds / span_t, 1)

    def y(amount: int) -> float:
        return round(TOP + plot_h * (high - amount) / (high - low), 1)

    # The step line: flat to each entry, then up or down to the balance after it.
    path = [f"M{x(start)} {y(opening_minor)}"]
    for step in steps:
        path.append(f"H{x(step.at)}")
        path.append(f"V{y(step.balance_minor)}")
    last = steps[-1].balance_minor if steps else opening_minor
    path.append(f"H{x(end)}")
    line = " ".join(path)
    # Zero is always on the scale (low <= 0 <= high): the area is filled down (or up) to it.
    area = f"{line} V{y(0)} H{x(start)} Z"

    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'role="img" aria-labelledby="{chart_id}-title" data-testid="balance-chart" '
        f'class="balance-chart" preserveAspectRatio="xMidYMid meet">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
    ]
    if caption:
        parts.append(
            f'<text x="{LEFT - 8}" y="{TOP - 12}" text-anchor="end" font-size="11" '
            f'fill="#6b7280">{escape(caption)}</text>'
        )
    # Amount grid and labels.
    for tick in ticks:
        ty = y(tick)
        stroke = "#94a3b8" if tick == 0 else "#e5e7eb"
        dash = "" if tick == 0 else ' stroke-dasharray="3 3"'
        parts.append(
            f'<line x1="{LEFT}" y1="{ty}" x2="{WIDTH - RIGHT}" y2="{ty}" '
            f'stroke="{stroke}" stroke-width="1"{dash}/>'
        )
        parts.append(
            f'<text x="{LEFT - 8}" y="{ty}" text-anchor="end" dominant-baseline="middle" '
            f'font-size="11" fill="#6b7280">{escape(amount_label(tick))}</text>'
        )
    # Date ticks: five evenly spaced moments, the first and the last at the edges.
    base = TOP + plot_h
    parts.append(
        f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" '
        f'stroke="#cbd5e1" stroke-width="1"/>'
    )
    count = 5
    for n in range(count):
        moment = start + (end - start) * n / (count - 1)
        tx = x(moment)
        anchor = "start" if n == 0 else "end" if n == count - 1 else "middle"
        parts.append(
            f'<line x1="{tx}" y1="{base}" x2="{tx}" y2="{base + 4}" stroke="#cbd5e1" '
            f'stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{tx}" y="{base + 18}" text-anchor="{anchor}" font-size="11" '
            f'fill="#6b7280">{escape(date_label(moment))}</text>'
        )
    parts.append(f'<path d="{area}" fill="#0f766e" fill-opacity="0.08" stroke="none"/>')
    parts.append(
        f'<path class="balance-line" d="{line}" fill="none" stroke="#0f766e" '
        f'stroke-width="2" stroke-linejoin="round" stroke-linecap="round"/>'
    )
    parts.append(f'<circle cx="{x(end)}" cy="{y(last)}" r="3.5" fill="#0f766e"/>')
    parts.append("</svg>")
    # Every piece of text in it (title, labels) was escaped above; the rest are numbers.
    return Markup("".join(parts))  # noqa: S704
