"""Printing command results: JSON for machines (`--json`), aligned text for people (the `studyllm` CLI and
the pipeline's commands alike)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def emit(payload: dict[str, Any], as_json: bool, human: Callable[[dict[str, Any]], str]) -> None:
    """Print `payload` as one JSON object, or as the text `human` renders from it."""
    if as_json:
        json.dump(payload, sys.stdout, default=_json_value)
        sys.stdout.write("\n")
    else:
        print(human(payload))


def when(value: Any) -> str:
    """A time for people: ISO 8601 to the second (`2026-04-01T09:30:00`), `-` when there is none."""
    if value is None:
        return "-"
    text = value.isoformat() if hasattr(value, "isoformat") else str(value).replace(" ", "T", 1)
    return text[:19]


def _json_value(value: Any) -> Any:
    """JSON for what `json` cannot write: times as ISO 8601, numpy scalars as numbers, the rest as text."""
    plain = _plain(value)
    return plain if plain is not value else str(value)


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """A plain aligned text table."""
    if not rows:
        return "(none)"
    cells = [[str(r.get(c, "")) if r.get(c) is not None else "-" for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def records(frame: Any) -> list[dict[str, Any]]:
    """Rows of a pandas DataFrame as JSON-ready dicts: NaN and NaT become None, times ISO 8601 text."""
    out = []
    for row in frame.to_dict(orient="records"):
        out.append({key: _plain(value) for key, value in row.items()})
    return out


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and value != value) or type(value).__name__ == "NaTType":
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value
