"""Reading texts (and optional labels) from CSV, TSV, Parquet, JSONL or TXT files.

Problems with the file as a whole (missing, empty, no such column, unparseable) raise
`InputError` before any API call. Problems of single rows are left to the services, which skip,
count and record them: bytes that are not UTF-8 arrive as lone surrogates (surrogateescape), so
the row can be reported instead of the whole file failing.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from studyllm_core.errors import InputError

Columns = dict[object, list]  # column name (or 0-based index without a header) -> values in row order

FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "txt", ".text": "txt",
}
DEFAULT_TEXT_COLUMNS = ("text", "prompt", "response", "content", "sentence")
LABEL_COLUMN = "label"  # a dataset file's column of reference labels when nobody names one


@dataclass
class TextTable:
    """Texts of a file in row order, with labels when a label column was named."""

    texts: list[str]
    labels: list[str] | None
    text_column: str
    source: Path


def read_texts(
    path: str | Path,
    *,
    text_column: str | int | None = None,
    label_column: str | int | None = None,
    header: bool = True,
) -> TextTable:
    """Load the text column (and label column) of `path`; see the module docstring for errors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file {path} does not exist")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"cannot tell the format of {path.name}: use one of {', '.join(sorted(FORMATS))}")
    if path.stat().st_size == 0:
        raise InputError(f"input file {path} is empty")
    if fmt == "txt":
        if label_column is not None:
            raise InputError("a .txt input holds one text per line and has no label column")
        raw = path.read_bytes().decode("utf-8", "surrogateescape")
        texts = raw.split("\n")
        if texts and texts[-1] == "":
            texts.pop()
        texts = [t[:-1] if t.endswith("\r") else t for t in texts]
        return TextTable(texts=texts, labels=None, text_column="line", source=path)
    columns = _read_columns(path, fmt, header)
    if not columns or not len(next(iter(columns.values()))):
        raise InputError(f"input file {path} has a header but no rows")
    text_name = _pick_column(columns, text_column, path, role="text")
    label_name = _pick_column(columns, label_column, path, role="label") if label_column is not None else None
    texts = [t if isinstance(t, str) else ("" if t is None or t != t else str(t)) for t in columns[text_name]]
    labels = [str(v) for v in columns[label_name]] if label_name is not None else None
    return TextTable(texts=texts, labels=labels, text_column=str(text_name), source=path)


def column_names(path: str | Path) -> list[str]:
    """The column names of a file with a header, read from its first row or schema only (a TXT file
    has none). For a quick look, e.g. whether it has a label column, without loading the file."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        if fmt in ("csv", "tsv"):
            with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as handle:
                first = next((line for line in handle if line.strip()), "")
            if fmt == "tsv":
                return first.rstrip("\r\n").split("\t")
            return next(csv.reader([first]), [])
        if fmt == "jsonl":
            with path.open("r", encoding="utf-8", errors="surrogateescape") as handle:
                first = next((line for line in handle if line.strip()), "")
            row = json.loads(first) if first else {}
            return list(row) if isinstance(row, dict) else []
    except (OSError, ValueError) as exc:  # unreadable now; reading the file for real reports it properly
        raise InputError(f"cannot read the columns of {path.name}: {exc}") from None
    return []


def _read_columns(path: Path, fmt: str, header: bool) -> Columns:
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pydict()
        if fmt == "jsonl":
            return _read_jsonl(path)
        return _read_delimited(path, fmt, header)
    except InputError:
        raise
    except Exception as exc:  # parser errors of pandas/pyarrow name the line; keep their first line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {path.name} as {fmt}: {reason}") from None


def _read_delimited(path: Path, fmt: str, header: bool) -> Columns:
    """CSV/TSV through the csv module, which keeps undecodable bytes, NULs and 1 MB fields intact."""
    csv.field_size_limit(1 << 30)
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    if fmt == "tsv":  # TSV has no quoting: a quote character is part of the text
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
    rows = [row for row in reader if row]
    if not rows:
        raise InputError(f"input file {path} has no rows")
    names = rows.pop(0) if header else list(range(max(len(r) for r in rows)))
    width = len(names)
    padded = [row[:width] + [""] * (width - len(row)) for row in rows]
    return {name: [row[i] for row in padded] for i, name in enumerate(names)}


def _read_jsonl(path: Path) -> Columns:
    rows: list[dict] = []
    with path.open("r", encoding="utf-8", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path.name} line {number} is not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise InputError(f"{path.name} line {number} is not a JSON object")
            rows.append(row)
    names = list(dict.fromkeys(key for row in rows for key in row))
    return {name: [row.get(name) for row in rows] for name in names}


def _pick_column(data: Columns, wanted: str | int | None, path: Path, *, role: str) -> object:
    columns = list(data)
    shown = ", ".join(str(c) for c in columns)
    if wanted is None:
        for name in DEFAULT_TEXT_COLUMNS:
            if name in columns:
                return name
        if len(columns) == 1:
            return columns[0]
        raise InputError(f"{path.name} has columns {shown}: name the {role} column with --{role}-column")
    if wanted in columns:
        return wanted
    if isinstance(wanted, int) or str(wanted).isdigit():
        index = int(wanted)
        if 0 <= index < len(columns):
            return columns[index]
        raise InputError(f"{path.name} has {len(columns)} columns; {role} column index {index} is out of range")
    raise InputError(f"{path.name} has no column {wanted!r}; its columns are {shown}")
