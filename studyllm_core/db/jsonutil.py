"""JSON for Postgres: JSONB rejects NaN and NUL characters, so values are made storable, not dropped."""

from __future__ import annotations

import json
import math
from typing import Any

from psycopg.types.json import Jsonb


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {str(k).replace("\x00", ""): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def dumps(value: Any) -> str:
    """Serialise for JSONB: non-finite floats become null and NUL characters are removed."""
    try:
        out = json.dumps(value, allow_nan=False, default=str, ensure_ascii=False)
    except ValueError:
        out = json.dumps(_clean(value), allow_nan=False, default=str, ensure_ascii=False)
    if "\\u0000" in out:
        out = json.dumps(_clean(value), allow_nan=False, default=str, ensure_ascii=False)
    return out


def jsonb(value: Any) -> Jsonb | None:
    """A psycopg JSONB parameter (None stays SQL NULL)."""
    return None if value is None else Jsonb(value, dumps=dumps)
