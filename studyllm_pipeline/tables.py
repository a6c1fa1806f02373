"""DataFrames as Dagster table metadata: a real table (sortable, never cut off, its columns described)
and the `dagster/column_schema` and `dagster/row_count` of table assets; charts as markdown images.

Descriptions and meaningful decimals come from the core's column dictionary (studyllm_core.columns);
ids are shown as text so the UI never plots them as a series.
"""

from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from studyllm_core.charts import data_uri
from studyllm_core.columns import describe, rounded

ID_COLUMNS = {"id", "raw_call_id", "group_id", "artifact_id"}


def _type(name: str, series: pd.Series) -> str:
    if name in ID_COLUMNS:
        return "string"
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "timestamp"
    return "string"


def column_schema(frame: pd.DataFrame) -> dg.TableSchema:
    """The frame's columns with their types and descriptions."""
    return dg.TableSchema(columns=[
        dg.TableColumn(str(name), _type(str(name), frame[name]), description=describe(str(name)))
        for name in frame.columns
    ])


def _cell(name: str, value: Any, max_chars: int) -> Any:
    if isinstance(value, (list, tuple, np.ndarray)):
        value = "; ".join(str(v) for v in value)
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if name in ID_COLUMNS:
        return str(value)
    if hasattr(value, "isoformat"):  # datetime, pd.Timestamp
        return value.isoformat()
    if isinstance(value, str) and len(value) > max_chars:
        return value[: max_chars - 1] + "…"
    return value


def as_table(frame: pd.DataFrame, *, max_rows: int = 50, max_chars: int = 300) -> dg.TableMetadataValue:
    """The first `max_rows` rows as a table, floats rounded to their meaningful decimals."""
    shown = rounded(frame.head(max_rows))
    names = [str(c) for c in shown.columns]
    records = [dg.TableRecord({name: _cell(name, value, max_chars) for name, value in zip(names, row)})
               for row in shown.itertuples(index=False)]
    return dg.MetadataValue.table(records, schema=column_schema(frame))


def table_asset_metadata(frame: pd.DataFrame) -> dict[str, Any]:
    """What Dagster shows for a table asset: its column schema (Overview, Definition) and row count."""
    return {"dagster/column_schema": column_schema(frame), "dagster/row_count": len(frame)}


def chart(svg: str, alt: str) -> dg.MetadataValue:
    """A chart (SVG from studyllm_core.charts) as a markdown image the UI shows inline."""
    return dg.MetadataValue.md(f"![{alt}]({data_uri(svg)})")
