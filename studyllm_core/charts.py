"""Small SVG line charts for reports and the Dagster UI, with no plotting library."""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from html import escape

_COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2")


def line_chart_svg(
    x: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str = "",
    x_label: str = "",
    marker_x: float | None = None,
    width: int = 640,
    height: int = 320,
    as_base64: bool = False,
) -> str:
    """One line per series over shared x values (None/NaN points are skipped); a dashed line marks `marker_x`."""
    left, right, top, bottom = 48, 130, 32, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [float(v) for ys in series.values() for v in ys if v is not None and math.isfinite(float(v))]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    x0, x1 = (min(x), max(x)) if x else (0.0, 1.0)
    span = (x1 - x0) or 1.0

    def px(v: float) -> float:
        return left + (v - x0) / span * plot_w

    def py(v: float) -> float:
        return top + (hi - v) / (hi - lo) * plot_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        'font-family="sans-serif" font-size="11">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#444"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#444"/>',
    ]
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        parts.append(f'<text x="{left - 6}" y="{py(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
        parts.append(f'<line x1="{left}" y1="{py(v):.1f}" x2="{left + plot_w}" y2="{py(v):.1f}" stroke="#eee"/>')
    for v in x:
        parts.append(f'<text x="{px(v):.1f}" y="{top + plot_h + 14}" text-anchor="middle">{v:g}</text>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">{escape(x_label)}</text>')
    if marker_x is not None:
        parts.append(
            f'<line x1="{px(marker_x):.1f}" y1="{top}" x2="{px(marker_x):.1f}" y2="{top + plot_h}" '
            'stroke="#111" stroke-dasharray="4 3"/>'
        )
    for index, (name, ys) in enumerate(series.items()):
        colour = _COLOURS[index % len(_COLOURS)]
        points = [
            f"{px(xv):.1f},{py(float(yv)):.1f}"
            for xv, yv in zip(x, ys)
            if yv is not None and math.isfinite(float(yv))
        ]
        if points:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(points)}"/>')
        legend_y = top + 14 * index + 6
        parts.append(f'<line x1="{left + plot_w + 12}" y1="{legend_y}" x2="{left + plot_w + 30}" y2="{legend_y}" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{left + plot_w + 34}" y="{legend_y + 4}">{escape(name)}</text>')
    parts.append("</svg>")
    svg = "".join(parts)
    return base64.b64encode(svg.encode()).decode() if as_base64 else svg
