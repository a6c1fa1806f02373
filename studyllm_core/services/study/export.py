"""ExportService: a group's raw calls and embeddings as files, streamed in chunks.

A group covers its own members and those of every group below it (`ProvenanceService.scope`:
`depends_on`, `step` and `contains` edges). The export writes, into one folder:

- `calls.<fmt>`: one row per call (id order) with request, response, error, tokens, latency and
  metadata; Parquet and CSV hold the JSON fields as JSON text, JSONL as nested objects;
- the embeddings the group and the groups below it used (`group_embeddings`: exactly their texts,
  not every text of an API call they shared), per (provider, model, server, dimension):
  `embeddings.npy` (float32, one row per vector) and `embeddings_index.<fmt>` (row -> embedding
  id, request_hash, text, raw_call_id); several models get `embeddings-<provider>-<model>-<d>.*`
  (with the server's host when there is one).

Everything is read in one REPEATABLE READ snapshot through server-side cursors, `chunk_size`
rows at a time, so memory stays flat whatever the size. Files appear under their final names
only when all are complete; on any error nothing is left behind.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import Connection, Engine

from studyllm_core.db.calls import CallFilter
from studyllm_core.db.engine import driver_sql, translate_db_errors
from studyllm_core.db.groups import GroupRepository, GroupRow
from studyllm_core.db.embedding_cache import RawVectorLoader, decode_vectors
from studyllm_core.errors import InputError, NotFoundError
from studyllm_core.services.artifacts import sha256_of
from studyllm_core.services.provenance import ProvenanceService

EXPORT_FORMATS = ("parquet", "csv", "jsonl")
DEFAULT_CHUNK = 10_000

_CALL_FIELDS = [
    ("id", pa.int64()), ("created_at", pa.timestamp("us", tz="UTC")), ("provider", pa.string()),
    ("model", pa.string()), ("modality", pa.string()), ("status", pa.string()), ("latency_ms", pa.float64()),
    ("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()), ("total_tokens", pa.int64()),
    ("request_hash", pa.string()), ("request_json", pa.string()), ("response_json", pa.string()),
    ("error_json", pa.string()), ("tokens_json", pa.string()), ("metadata_json", pa.string()),
]
CALL_SCHEMA = pa.schema(_CALL_FIELDS)
JSON_COLUMNS = ("request_json", "response_json", "error_json", "tokens_json", "metadata_json")
INDEX_SCHEMA = pa.schema([
    ("row", pa.int64()), ("embedding_id", pa.int64()), ("request_hash", pa.string()), ("text", pa.string()),
    ("raw_call_id", pa.int64()),
])


@dataclass
class ExportedFile:
    path: Path
    rows: int
    sha256: str = ""


@dataclass
class ExportResult:
    """What one export wrote."""

    group: GroupRow
    group_ids: list[int]
    format: str
    calls: ExportedFile
    embeddings: list[dict[str, Any]] = field(default_factory=list)  # per space: provider, model, dimension, files

    def summary(self) -> dict[str, Any]:
        def f(x: ExportedFile) -> dict[str, Any]:
            return {"path": str(x.path), "rows": x.rows, "sha256": x.sha256}

        return {
            "group": {"id": self.group.id, "type": self.group.group_type, "name": self.group.name},
            "groups": len(self.group_ids),
            "format": self.format,
            "calls": f(self.calls),
            "embeddings": [
                {**{k: e[k] for k in ("provider", "model", "server", "dimension")}, "vectors": f(e["vectors"]),
                 "index": f(e["index"])}
                for e in self.embeddings
            ],
        }


class ExportService:
    """Write a group's calls and embeddings to Parquet, CSV or JSONL (+ NPY)."""

    def __init__(self, engine: Engine, *, chunk_size: int = DEFAULT_CHUNK) -> None:
        self.engine = engine
        self.chunk_size = chunk_size
        self.provenance = ProvenanceService(engine)

    def export(self, id_or_name: str | int, out_dir: str | Path, fmt: str = "parquet") -> ExportResult:
        """Export the calls (and embeddings) of a group and its descendants into `out_dir`."""
        if fmt not in EXPORT_FORMATS:
            raise InputError(f"--format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}")
        group = GroupRepository(self.engine).find_group(id_or_name)
        scope = self.provenance.scope(group.id)
        out = Path(out_dir)
        if out.exists() and not out.is_dir():
            raise InputError(f"{out} is a file; give --out a folder (new or empty) to write the export into")
        if out.is_dir() and any(out.iterdir()):
            raise InputError(f"{out} is not empty; choose a new or empty folder for --out")
        flt = CallFilter(group_ids=scope)
        staged: list[tuple[Path, Path]] = []  # (temporary, final)
        out.mkdir(parents=True, exist_ok=True)
        try:
            with translate_db_errors(f"exporting group {group.name!r}"), self._snapshot() as conn:
                calls_path = out / f"calls.{fmt}"
                calls = ExportedFile(calls_path, self._write_calls(conn, flt, self._stage(calls_path, staged), fmt))
                if calls.rows == 0:
                    raise NotFoundError(
                        f"group {group.name!r} (id {group.id}) and the {len(scope) - 1} groups below it hold no calls; "
                        "nothing to export (list groups with `studyllm groups`)"
                    )
                embeddings = self._write_embeddings(conn, scope, out, fmt, staged)
            for tmp, final in staged:
                os.replace(tmp, final)
        except BaseException:
            for tmp, _ in staged:
                tmp.unlink(missing_ok=True)
            if not any(out.iterdir()):
                out.rmdir()
            raise
        calls.sha256 = sha256_of(calls.path)
        for e in embeddings:
            for key in ("vectors", "index"):
                e[key].sha256 = sha256_of(e[key].path)
        return ExportResult(group, scope, fmt, calls, embeddings)

    # -- calls ----------------------------------------------------------------------------------

    def _write_calls(self, conn: Connection, flt: CallFilter, path: Path, fmt: str) -> int:
        where, params = flt.where()
        if fmt == "jsonl":
            # Postgres writes each line: JSON fields stay nested objects, times ISO 8601 in UTC.
            pairs = ", ".join(f"'{name}', {name}" for name, _ in _CALL_FIELDS)
            sql = f"SELECT json_build_object({pairs})::text FROM raw_calls{where} ORDER BY id"
            rows = 0
            with path.open("w", encoding="utf-8") as handle:
                for chunk in self._stream(conn, sql, params, "export_calls"):
                    handle.write("".join(line + "\n" for (line,) in chunk))
                    rows += len(chunk)
            return rows
        columns = ", ".join(f"{name}::text" if name in JSON_COLUMNS else name for name, _ in _CALL_FIELDS)
        sql = f"SELECT {columns} FROM raw_calls{where} ORDER BY id"
        with _TableWriter(path, CALL_SCHEMA, fmt) as writer:
            for chunk in self._stream(conn, sql, params, "export_calls"):
                writer.write(_table(chunk, CALL_SCHEMA))
            return writer.rows

    # -- embeddings -----------------------------------------------------------------------------

    def _write_embeddings(
        self, conn: Connection, scope: list[int], out: Path, fmt: str, staged: list[tuple[Path, Path]]
    ) -> list[dict[str, Any]]:
        items = "SELECT embedding_id FROM group_embeddings WHERE group_id = ANY(%(scope)s)"
        params: dict[str, Any] = {"scope": list(scope)}
        counts = conn.exec_driver_sql(
            "SELECT provider, model, server, dimension, count(*) FROM embedding_vectors "
            f"WHERE id IN ({items}) GROUP BY provider, model, server, dimension ORDER BY provider, model, server, dimension",
            params,
        ).all()
        written = []
        for provider, model, server, dimension, n in counts:
            host = f"-{_slug(urlsplit(server).netloc)}" if server else ""
            stem = "embeddings" if len(counts) == 1 else f"embeddings-{_slug(provider)}{host}-{_slug(model)}-{dimension}"
            npy, index = out / f"{stem}.npy", out / f"{stem}_index.{fmt}"
            matrix = np.lib.format.open_memmap(self._stage(npy, staged), mode="w+", dtype=np.float32, shape=(n, dimension))
            sql = (
                "SELECT id, request_hash, text, raw_call_id, vector FROM embedding_vectors "
                f"WHERE provider = %(sp)s AND model = %(sm)s AND server = %(ss)s AND dimension = %(sd)s AND id IN ({items}) "
                "ORDER BY id"
            )
            row = 0
            with _TableWriter(self._stage(index, staged), INDEX_SCHEMA, fmt) as writer:
                chunks = self._stream(
                    conn, sql, {**params, "sp": provider, "sm": model, "ss": server, "sd": dimension}, "export_vectors",
                    raw=True, vectors_as_bytes=True,
                )
                for chunk in chunks:
                    matrix[row : row + len(chunk)] = decode_vectors([v for *_, v in chunk], int(dimension))
                    ids = [(row + i, e, h, t, c) for i, (e, h, t, c, _) in enumerate(chunk)]
                    writer.write(_table(ids, INDEX_SCHEMA))
                    row += len(chunk)
            matrix.flush()
            del matrix
            written.append({"provider": provider, "model": model, "server": server, "dimension": int(dimension),
                            "vectors": ExportedFile(npy, row), "index": ExportedFile(index, row)})
        return written

    # -- plumbing -------------------------------------------------------------------------------

    def _snapshot(self):  # noqa: ANN202 - a context manager yielding a Connection
        """One consistent, read-only view of the database for the whole export."""
        conn = self.engine.connect().execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        return _Transaction(conn)

    def _stream(  # noqa: ANN202
        self, conn: Connection, sql: str, params: dict[str, Any], name: str, *, raw: bool = False,
        vectors_as_bytes: bool = False,
    ):
        """Rows of `sql` in chunks through a server-side cursor (binary transfer); `raw`: the SQL is
        already in the driver's style; `vectors_as_bytes`: vectors stay pgvector bytes for `decode_vectors`."""
        statement = sql if raw else driver_sql(conn, sql)
        cursor = conn.connection.driver_connection.cursor(name=name, binary=True)
        if vectors_as_bytes:
            cursor.adapters.register_loader("vector", RawVectorLoader)
        try:
            cursor.execute(statement, params)
            while chunk := cursor.fetchmany(self.chunk_size):
                yield chunk
        finally:
            cursor.close()

    @staticmethod
    def _stage(final: Path, staged: list[tuple[Path, Path]]) -> Path:
        fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.")
        os.close(fd)
        staged.append((Path(tmp), final))
        return Path(tmp)


class _Transaction:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> Connection:
        self.conn.begin()
        self.conn.exec_driver_sql("SET LOCAL TimeZone = 'UTC'")
        return self.conn

    def __exit__(self, *exc: object) -> None:
        try:
            self.conn.rollback()  # read-only: nothing to keep
        finally:
            self.conn.close()


class _TableWriter:
    """Append Arrow tables to one Parquet, CSV or JSONL file."""

    def __init__(self, path: Path, schema: pa.Schema, fmt: str) -> None:
        self.path, self.schema, self.fmt, self.rows = path, schema, fmt, 0
        if fmt == "parquet":
            self.writer: Any = pq.ParquetWriter(path, schema)
        elif fmt == "csv":
            self.writer = pacsv.CSVWriter(path, schema)
        else:
            self.writer = path.open("w", encoding="utf-8")

    def write(self, table: pa.Table) -> None:
        if self.fmt == "jsonl":
            if table.num_rows:
                self.writer.write(table.to_pandas().to_json(orient="records", lines=True, force_ascii=False))
        elif self.fmt == "parquet":
            self.writer.write_table(table)
        else:
            self.writer.write(table)
        self.rows += table.num_rows

    def __enter__(self) -> _TableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.writer.close()


def _table(rows: list[tuple], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows)) if rows else [[] for _ in schema]
    return pa.Table.from_arrays([pa.array(col, type=f.type) for col, f in zip(columns, schema)], schema=schema)


def _slug(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "_", value).strip("_") or "x"
