"""Charts for reports and the Dagster UI, drawn by matplotlib as SVG text.

Figures are built with matplotlib's object API (`Figure`, no pyplot), so nothing here changes the
process's backend or global state; text stays text in the SVG (small, searchable).
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # matplotlib is imported by the first chart drawn: a run that draws none never pays for it
    from matplotlib.figure import Figure

_SIZE = (7.0, 3.4)  # inches at 96 dpi: about 670 x 330 px, the width of a metadata panel


def _figure() -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=_SIZE, dpi=96)


def _svg(fig: Figure) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "studyllm"}):  # text as text; stable ids
        fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return buffer.getvalue()


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) if v is not None and math.isfinite(float(v)) else math.nan for v in values]


def line_chart(
    x: Sequence[float], series: Mapping[str, Sequence[float | None]], *, title: str = "", x_label: str = "",
    y_label: str = "", marker_x: float | None = None,
) -> str:
    """One line with markers per series over shared x values (missing points leave gaps); a dashed line marks `marker_x`."""
    fig = _figure()
    ax = fig.add_subplot()
    for name, ys in series.items():
        ax.plot(list(x), _finite(ys), marker="o", markersize=3, linewidth=1.5, label=name)
    if marker_x is not None:
        ax.axvline(marker_x, color="#111", linestyle="--", linewidth=1, label=f"{x_label or 'x'} = {marker_x:g}")
    ax.set(title=title, xlabel=x_label, ylabel=y_label)
    if all(float(v).is_integer() for v in x):
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # K = 3, 4, 5, never 3.25
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=8)
    return _svg(fig)


def bar_chart(categories: Sequence[str], series: Mapping[str, Sequence[float | None]], *, title: str = "",
              y_label: str = "") -> str:
    """Grouped bars: one group per category, one bar per series (missing values leave no bar)."""
    fig = _figure()
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(series))
    for i, (name, ys) in enumerate(series.items()):
        positions = [c + (i - (len(series) - 1) / 2) * width for c in range(len(categories))]
        ax.bar(positions, [0 if math.isnan(v) else v for v in _finite(ys)], width=width, label=name)
    ax.set_xticks(range(len(categories)), list(categories), rotation=20 if len(categories) > 3 else 0, ha="right"
                  if len(categories) > 3 else "center", fontsize=8)
    ax.set(title=title, ylabel=y_label)
    ax.grid(axis="y", alpha=0.3)
    if len(series) > 1:
        ax.legend(frameon=False, fontsize=8)
    return _svg(fig)


def time_chart(times: Sequence[datetime], series: Mapping[str, Sequence[float | None]], *, title: str = "",
               y_label: str = "") -> str:
    """Series over time, with markers so a single bucket is drawn too."""
    fig = _figure()
    ax = fig.add_subplot()
    for name, ys in series.items():
        ax.plot(list(times), _finite(ys), marker="o", markersize=4, linewidth=1.5, label=name)
    ax.set(title=title, ylabel=y_label)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    fig.autofmt_xdate()
    return _svg(fig)


def data_uri(svg: str) -> str:
    """An SVG as a `data:` URI, for markdown images."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()
