"""Server-rendered SVG charts for the console: no script, no inline style (the console's CSP forbids both), colours
from console.css classes. Each chart is one ``<svg role="img">`` named by its ``<title>`` and described by a
``<desc>`` that says the numbers in words; the page puts the same numbers in a table next to it. The
``viewBox`` scales the chart to the screen's width (phones included; console.css ``svg.chart``).
"""

from __future__ import annotations

import math

from assistant.console.render import esc

Part = tuple[str, int]  # (css class, count)


def _open(chart_id: str, title: str, summary: str, width: int, height: int, *, css: str = "chart") -> str:
    return (f'<svg id="{esc(chart_id)}" class="{esc(css)}" role="img" viewBox="0 0 {width} {height}" '
            f'aria-labelledby="{esc(chart_id)}-t {esc(chart_id)}-d"><title id="{esc(chart_id)}-t">{esc(title)}</title>'
            f'<desc id="{esc(chart_id)}-d">{esc(summary)}</desc>')


def legend(items: list[tuple[str, str]]) -> str:
    """The colour key under a chart: ``[(css class, label)]`` (decorative swatches, the label is text)."""
    keys = "".join(f'<li><svg width="18" height="18" aria-hidden="true" focusable="false"><rect width="18" height="18" '
                   f'class="{esc(c)}"/></svg> {esc(text)}</li>' for c, text in items)
    return f'<ul class="legend">{keys}</ul>'


def stacked_bars(*, chart_id: str, title: str, summary: str, rows: list[tuple[str, list[Part]]],
                 css: str = "chart") -> str:
    """One horizontal bar per entry (e.g. per district), its parts side by side, the total after it."""
    row_h, label_w, bar_w = 40, 90, 400
    width, height = label_w + bar_w + 70, row_h * max(len(rows), 1) + 10
    peak = max((sum(c for _, c in parts) for _, parts in rows), default=0) or 1
    out = [_open(chart_id, title, summary, width, height, css=css)]
    for i, (label, parts) in enumerate(rows):
        y = i * row_h + 6
        out.append(f'<text x="0" y="{y + 22}" class="chart-label">{esc(label)}</text>')
        x = float(label_w)
        for part, count in parts:
            w = bar_w * count / peak
            if w > 0:
                out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="28" class="{esc(part)}"/>')
            x += w
        out.append(f'<text x="{x + 8:.1f}" y="{y + 22}" class="chart-num">{sum(c for _, c in parts)}</text>')
    out.append("</svg>")
    return "".join(out)


def stacked_columns(*, chart_id: str, title: str, summary: str, columns: list[tuple[str, list[Part]]]) -> str:
    """One column per entry (e.g. per day), its parts stacked bottom up, the total above it; every
    ``ceil(n / 8)``-th label is written under the axis so 31 days still fit a phone."""
    width, height, top, bottom, left = 560, 280, 30, 38, 8
    plot_h = height - top - bottom
    n = max(len(columns), 1)
    slot = (width - left) / n
    bar = max(min(slot * 0.7, 56.0), 2.0)
    peak = max((sum(c for _, c in parts) for _, parts in columns), default=0) or 1
    every = math.ceil(n / 8)
    out = [_open(chart_id, title, summary, width, height),
           f'<line x1="{left}" y1="{top + plot_h}" x2="{width}" y2="{top + plot_h}" class="axis"/>']
    for i, (label, parts) in enumerate(columns):
        x = left + i * slot + (slot - bar) / 2
        y = float(top + plot_h)
        for css, count in parts:
            h = plot_h * count / peak
            if h > 0:
                y -= h
                out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" class="{esc(css)}"/>')
        total = sum(c for _, c in parts)
        cx = x + bar / 2
        if n <= 16 or total == peak:
            out.append(f'<text x="{cx:.1f}" y="{y - 5:.1f}" class="chart-num" text-anchor="middle">{total}</text>')
        if i % every == 0:
            out.append(f'<text x="{cx:.1f}" y="{height - 12}" class="chart-label" text-anchor="middle">{esc(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def rate_bars(*, chart_id: str, title: str, summary: str, rows: list[tuple[str, float | None]],
              css: str = "c-rate") -> str:
    """One horizontal bar per entry (e.g. per district) from 0 to 100 %, the rate written after it ("—": none)."""
    row_h, label_w, bar_w, width = 44, 96, 360, 560
    height = row_h * max(len(rows), 1) + 30
    out = [_open(chart_id, title, summary, width, height)]
    for pct in (0, 50, 100):
        x = label_w + bar_w * pct / 100
        out.append(f'<line x1="{x:.1f}" y1="4" x2="{x:.1f}" y2="{height - 26}" class="grid"/>'
                   f'<text x="{x:.1f}" y="{height - 6}" class="chart-label" text-anchor="middle">{pct}%</text>')
    for i, (label, rate) in enumerate(rows):
        y = i * row_h + 8
        out.append(f'<text x="0" y="{y + 22}" class="chart-label">{esc(label)}</text>')
        w = bar_w * (rate or 0.0)
        if w > 0:
            out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="28" class="{esc(css)}"/>')
        text = "—" if rate is None else f"{rate:.0%}"
        out.append(f'<text x="{label_w + w + 8:.1f}" y="{y + 22}" class="chart-num">{text}</text>')
    out.append("</svg>")
    return "".join(out)
