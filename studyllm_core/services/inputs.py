"""Reading texts (and optional labels) from CSV, TSV, Parquet, JSONL or TXT files.

Every format yields exactly its rows or fails: problems with the file as a whole raise
`InputError` before any API call, with one line naming the line or column and the fix:

- CSV quoting is parsed strictly, so an unclosed or stray quote stops the read at the line where
  the broken row starts, instead of swallowing the rows after it into one text;
- a CSV/TSV row with more cells than the header (a TSV text holding a tab) is refused, never cut;
- a header naming a column twice is refused (which of the two would be the text?);
- a text or label cell that is not text (a nested JSON object or list; a Parquet list, struct,
  map or binary column) is refused naming the column; numbers and booleans are read as text;
- a byte-order mark (Excel's "CSV UTF-8") is dropped;
- a file whose first row reads like data (headerless `label<TAB>text`) gets the hint to say so.

Problems of single rows are left to the services, which skip, count and record them: bytes that
are not UTF-8 arrive as lone surrogates (surrogateescape), so the row can be reported instead of
the whole file failing. Messages name the options the way the caller's user sets them
(`CLI_OPTIONS`: --no-header; `CONFIG_OPTIONS`: no_header in the Dagster run config).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studyllm_core.errors import InputError

Columns = dict[object, list]  # column name (or 0-based index without a header) -> values in row order

FORMATS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "txt", ".text": "txt",
}
DEFAULT_TEXT_COLUMNS = ("text", "prompt", "response", "content", "sentence")
LABEL_COLUMN = "label"  # a dataset file's column of reference labels when nobody names one
BOM = "\ufeff"


@dataclass(frozen=True)
class OptionNames:
    """How the user sets the reading options where the file came from: command-line flags or run-config fields."""

    text_column: str
    label_column: str
    no_header: str
    flags: bool  # True: `--text-column 1`; False: `text_column: 1`

    def set(self, option: str, value: object) -> str:
        name = getattr(self, option)
        return f"{name} {value}" if self.flags else f"{name}: {value}"

    def column(self, role: str) -> str:
        return self.text_column if role == "text" else self.label_column


CLI_OPTIONS = OptionNames("--text-column", "--label-column", "--no-header", flags=True)
CONFIG_OPTIONS = OptionNames("text_column", "label_column", "no_header: true", flags=False)


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
    options: OptionNames = CLI_OPTIONS,
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
        raw = _decode(path.read_bytes())
        texts = raw.split("\n")
        if texts and texts[-1] == "":
            texts.pop()
        texts = [t[:-1] if t.endswith("\r") else t for t in texts]
        return TextTable(texts=texts, labels=None, text_column="line", source=path)
    columns, where = _read_columns(path, fmt, header, options)
    if not columns or not len(next(iter(columns.values()))):
        raise InputError(f"input file {path} has a header but no rows")
    text_name = _pick_column(columns, text_column, path, role="text", options=options, header=header)
    label_name = (
        _pick_column(columns, label_column, path, role="label", options=options, header=header)
        if label_column is not None else None
    )
    texts = _as_texts(columns[text_name], text_name, path, where, options, role="text")
    labels = _as_texts(columns[label_name], label_name, path, where, options, role="label") if label_name is not None else None
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
                first = next((line for line in handle if line.strip()), "").removeprefix(BOM)
            if fmt == "tsv":
                return first.rstrip("\r\n").split("\t")
            return next(csv.reader([first]), [])
        if fmt == "jsonl":
            with path.open("r", encoding="utf-8", errors="surrogateescape") as handle:
                first = next((line for line in handle if line.strip()), "").removeprefix(BOM)
            row = json.loads(first) if first else {}
            return list(row) if isinstance(row, dict) else []
    except (OSError, ValueError) as exc:  # unreadable now; reading the file for real reports it properly
        raise InputError(f"cannot read the columns of {path.name}: {exc}") from None
    return []


def _decode(data: bytes) -> str:
    """UTF-8 with undecodable bytes kept as lone surrogates (reported per row later); a leading BOM dropped."""
    return data.decode("utf-8", "surrogateescape").removeprefix(BOM)


def _read_columns(path: Path, fmt: str, header: bool, options: OptionNames) -> tuple[Columns, dict[object, Any]]:
    """The columns of the file, and per column how to say where a value sits (for messages)."""
    try:
        if fmt == "parquet":
            return _read_parquet(path), {}
        if fmt == "jsonl":
            return _read_jsonl(path)
        return _read_delimited(path, fmt, header, options), {}
    except InputError:
        raise
    except Exception as exc:  # parser errors of pyarrow name the place; keep their first line
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {path.name} as {fmt}: {reason}") from None


def _read_delimited(path: Path, fmt: str, header: bool, options: OptionNames) -> Columns:
    """CSV/TSV through the csv module, which keeps undecodable bytes, NULs and 1 MB fields intact.

    CSV quoting is strict: a quote that is never closed, or text after a closing quote, is an error
    at the line where its row starts, not a field that swallows the rows after it.
    """
    csv.field_size_limit(1 << 30)
    text = _decode(path.read_bytes())
    if fmt == "tsv":  # TSV has no quoting: a quote character is part of the text
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE, strict=True)
    else:
        reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[list[str]] = []
    lines: list[int] = []  # the line each row starts on
    start = 1
    try:
        for row in reader:
            if row:
                rows.append(row)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(
            f"{path.name} line {start}: broken CSV quoting ({exc}, noticed at line {reader.line_num}): a text with a "
            "comma, quote or line break must be quoted, with each \" inside it doubled (\"\"); fix the quotes of "
            f"line {start}"
        ) from None
    if not rows:
        raise InputError(f"input file {path} has no rows")
    if header:
        names: list[object] = list(rows.pop(0))
        lines.pop(0)
        _refuse_duplicates(names, path)
    else:
        names = list(range(max(len(r) for r in rows)))
    width = len(names)
    for row, line in zip(rows, lines, strict=True):
        if len(row) > width and any(cell for cell in row[width:]):
            what = "tab" if fmt == "tsv" else "comma"
            raise InputError(
                f"{path.name} line {line} has {len(row)} cells but the header names {width} columns: a text with a "
                f"{what} must be quoted" + (" (TSV has no quoting: use CSV or remove the tabs)" if fmt == "tsv" else "")
                + ("" if header else f", or the file has a header row (leave out {options.no_header})")
            )
    if fmt != "tsv":
        _refuse_swallowed_rows(rows, lines, width, path)
    padded = [row[:width] + [""] * (width - len(row)) for row in rows]
    return {name: [row[i] for row in padded] for i, name in enumerate(names)}


SWALLOWED_MIN_LINES = 3  # inner lines of one quoted cell that look like rows before a quote is doubted


def _refuse_swallowed_rows(rows: list[list[str]], lines: list[int], width: int, path: Path) -> None:
    """InputError when a quoted cell holds line after line that each parse as a whole row of the file
    (the header's number of cells): a quote opened on one line and closed cleanly many lines later,
    which strict parsing cannot see, swallows those rows into one text. Parsed rows are compared
    with physical lines only inside such cells, so real multi-line texts pass."""
    if width < 2:
        return
    for row, line in zip(rows, lines, strict=True):
        for cell in row:
            if cell.count("\n") < SWALLOWED_MIN_LINES + 1:
                continue
            inner = cell.split("\n")[1:-1]  # the first and last pieces belong to the quoted text itself
            like_rows = sum(1 for piece in inner if len(next(csv.reader([piece]), [])) == width)
            if len(inner) >= SWALLOWED_MIN_LINES and like_rows >= 0.9 * len(inner):
                raise InputError(
                    f"{path.name} line {line}: a quoted text runs over {len(inner) + 2} lines that each look like a row "
                    f"of {width} cells (lines {line}-{line + len(inner) + 1}): a quote opened there is closed too late, "
                    "so those rows would become one text; fix the quotes of that line (each \" inside a text doubled), "
                    "or, if the text really has these line breaks, save the file as JSONL or Parquet"
                )


def _refuse_duplicates(names: list[object], path: Path) -> None:
    repeated = [name for name, n in Counter(names).items() if n > 1 and str(name) != ""]
    if repeated:
        name = repeated[0]
        positions = [str(i + 1) for i, n in enumerate(names) if n == name]
        raise InputError(
            f"{path.name} names the column {name!r} {len(positions)} times (columns {', '.join(positions)}): "
            "rename all but one in the header"
        )


def _read_jsonl(path: Path) -> tuple[Columns, dict[object, Any]]:
    rows: list[dict] = []
    numbers: list[int] = []

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            twice = next(k for k in keys if keys.count(k) > 1)
            raise _DuplicateKey(twice)
        return dict(pairs)

    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = _decode(raw) if number == 1 else raw.decode("utf-8", "surrogateescape")
            if not line.strip():
                continue
            try:
                row = json.loads(line, object_pairs_hook=no_duplicates)
            except _DuplicateKey as dup:
                raise InputError(f"{path.name} line {number} names the key {dup.key!r} twice: keep one") from None
            except json.JSONDecodeError as exc:
                raise InputError(f"{path.name} line {number} is not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise InputError(f"{path.name} line {number} is not a JSON object")
            rows.append(row)
            numbers.append(number)
    names = list(dict.fromkeys(key for row in rows for key in row))
    return {name: [row.get(name) for row in rows] for name in names}, {"lines": numbers}


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _read_parquet(path: Path) -> Columns:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    _refuse_duplicates(list(table.column_names), path)
    columns: Columns = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        columns[name] = _ParquetColumn(column)
    return columns


class _ParquetColumn(list):
    """A Parquet column's values, converted only when read as texts (its Arrow type decides how)."""

    def __init__(self, column: Any) -> None:
        super().__init__([None] * len(column))
        self.column = column


def _as_texts(values: list, name: object, path: Path, where: dict[object, Any], options: OptionNames, *, role: str) -> list[str]:
    """The cells of the text or label column as strings, or InputError naming the first cell that is not text."""
    if isinstance(values, _ParquetColumn):
        return _parquet_texts(values.column, name, path, options, role)
    out: list[str] = []
    lines = where.get("lines")
    for i, value in enumerate(values):
        if isinstance(value, str):
            out.append(value)
        elif value is None or (isinstance(value, float) and value != value):
            out.append("")
        elif isinstance(value, bool):
            out.append("true" if value else "false")
        elif isinstance(value, int | float):
            out.append(str(value))
        else:
            kind = {dict: "a JSON object", list: "a JSON array"}.get(type(value), type(value).__name__)
            at = f"line {lines[i]}" if lines else f"row {i}"
            raise InputError(
                f"{path.name} {at}: the {role} column {name!r} holds {kind}, not text: flatten it into a string, "
                f"or name another column with {options.column(role)}"
            )
    return out


def _parquet_texts(column: Any, name: object, path: Path, options: OptionNames, role: str) -> list[str]:
    import pyarrow as pa

    kind = column.type
    if pa.types.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or getattr(pa.types, "is_string_view", lambda _: False)(kind):
        return ["" if v is None else v for v in column.to_pylist()]
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind) or pa.types.is_boolean(kind):
        values = column.to_pylist()
        if pa.types.is_boolean(kind):
            return ["" if v is None else ("true" if v else "false") for v in values]
        return ["" if v is None or v != v else str(v) for v in values]
    if pa.types.is_null(kind):
        return [""] * len(column)
    raise InputError(
        f"{path.name}: the {role} column {name!r} is of Parquet type {kind}, not text: store it as strings, "
        f"or name another column with {options.column(role)}"
    )


def _looks_like_data(names: list[object]) -> bool:
    """Whether a header row reads like a row of texts (a sentence, a long cell) rather than column names."""
    for name in names:
        cell = str(name).strip()
        if len(cell) > 40 or len(cell.split()) >= 5 or (len(cell.split()) >= 2 and cell[-1:] in ".?!"):
            return True
    return False


def _pick_column(
    data: Columns, wanted: str | int | None, path: Path, *, role: str, options: OptionNames, header: bool
) -> object:
    columns = list(data)
    shown = ", ".join(repr(str(c)) if len(str(c)) <= 40 else repr(str(c)[:37] + "...") for c in columns)
    headerless = header and _looks_like_data(columns)
    hint = (
        f"; its first row reads like data, not a header: if the file has none, use {options.no_header} "
        f"and name the {role} column by position ({options.set(role + '_column', len(columns) - 1 if role == 'text' else 0)})"
        if headerless else ""
    )
    if wanted is None:
        for name in DEFAULT_TEXT_COLUMNS:
            if name in columns:
                return name
        if len(columns) == 1:
            return columns[0]
        raise InputError(f"{path.name} has columns {shown}: name the {role} column with {options.column(role)}{hint}")
    if wanted in columns:
        return wanted
    if isinstance(wanted, int) or str(wanted).isdigit():
        index = int(wanted)
        if 0 <= index < len(columns):
            return columns[index]
        raise InputError(f"{path.name} has {len(columns)} columns; {role} column index {index} is out of range")
    raise InputError(f"{path.name} has no column {wanted!r}; its columns are {shown}{hint}")
