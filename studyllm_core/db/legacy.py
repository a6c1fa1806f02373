"""The seed-era v1 database, opened read-only: its `inference_runs` table, read in chunks.

v1 was SQLite (`sqlite:///path`) or Postgres. SQLite opens with `mode=ro` (the file cannot be
written, nor created when missing); Postgres runs every statement in a read-only REPEATABLE READ
transaction, so all reads see one snapshot and none can write.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from studyllm_core.errors import InputError
from studyllm_core.redaction import mask_url_password

V1_TABLE = "inference_runs"
V1_COLUMNS = ("id", "prompt", "response", "provider", "tokens", "latency_ms", "metadata", "batch_id", "created_at")
URL_FORMS = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST:5432/DB"
_SELECT = "SELECT " + ", ".join(V1_COLUMNS) + f" FROM {V1_TABLE}"


@dataclass(frozen=True)
class V1Row:
    """One `inference_runs` row, with metadata parsed and created_at in UTC."""

    id: int
    prompt: str | None
    response: str | None
    provider: str | None
    tokens: Any
    latency_ms: float | None
    metadata: Any
    batch_id: Any
    created_at: datetime | None


@dataclass(frozen=True)
class BatchStats:
    """Rows and time range of one v1 batch (batch_id None: rows without a batch)."""

    batch_id: Any
    rows: int
    first_at: datetime | None
    last_at: datetime | None


class LegacySource:
    """Read-only access to a v1 database; use as a context manager."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.display_url = mask_url_password(url)
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise InputError(f"{url!r} is not a database URL; use {URL_FORMS}") from None
        self.kind = parsed.get_backend_name()
        if self.kind == "sqlite":
            path = Path(parsed.database or "")
            if not parsed.database or not path.is_file():
                raise InputError(f"no SQLite file at {parsed.database or '(empty path)'!r}; use sqlite:///PATH to an existing v1 database")
            uri = f"file:{quote(str(path.resolve()))}?mode=ro"
            self.engine = create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))
        elif self.kind == "postgresql":
            self.engine = create_engine(parsed.set(drivername="postgresql+psycopg"), poolclass=None)
        else:
            raise InputError(f"cannot read a v1 database from {self.kind!r} URLs; use {URL_FORMS}")
        self._conn: Connection | None = None

    def __enter__(self) -> LegacySource:
        try:
            conn = self.engine.connect()
            if self.kind == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            conn.begin()
        except DBAPIError as exc:
            raise InputError(f"cannot open the v1 database {self.display_url} ({_reason(exc)}); check the URL") from None
        self._conn = conn
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.rollback()  # read-only: there is nothing to keep
            self._conn.close()
        self.engine.dispose()

    @property
    def conn(self) -> Connection:
        assert self._conn is not None, "use LegacySource as a context manager"
        return self._conn

    # -- checks ---------------------------------------------------------------------------------

    def check_schema(self) -> list[str]:
        """Fail unless `inference_runs` has the v1 columns; returns its extra columns (ignored)."""
        try:
            insp = inspect(self.conn)
            tables = insp.get_table_names()
            columns = [c["name"] for c in insp.get_columns(V1_TABLE)] if V1_TABLE in tables else []
        except DBAPIError as exc:
            raise InputError(f"{self.display_url} cannot be read as a database ({_reason(exc)}); is it a v1 database?") from None
        if V1_TABLE not in tables:
            found = ", ".join(sorted(tables)) or "none"
            raise InputError(
                f"{self.display_url} has no table {V1_TABLE} (tables: {found}); import-legacy reads seed-era v1 databases"
            )
        missing = [c for c in V1_COLUMNS if c not in columns]
        if missing:
            raise InputError(
                f"{V1_TABLE} in {self.display_url} lacks columns {', '.join(missing)} (expected {', '.join(V1_COLUMNS)}); "
                "this is not the v1 schema import-legacy reads"
            )
        return [c for c in columns if c not in V1_COLUMNS]

    # -- reads ----------------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """16 hex digits that name this database whatever its path or URL: a hash of its first row.

        v1 is append-only, so the first row never changes; a copy of the file keeps the fingerprint.
        """
        row = self._rows(f"{_SELECT} ORDER BY id LIMIT 1")
        if not row:
            raise InputError(f"{V1_TABLE} in {self.display_url} is empty; there is nothing to import")
        first = row[0]
        key = "\x1f".join([V1_TABLE, str(first.id), _iso(first.created_at), first.prompt or ""])
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]

    def batches(self) -> list[BatchStats]:
        """Rows and time range per batch_id (one aggregate query)."""
        sql = f"SELECT batch_id, count(*), min(created_at), max(created_at) FROM {V1_TABLE} GROUP BY batch_id"
        result = self._execute(sql).all()
        return [BatchStats(b, int(n), _utc(lo), _utc(hi)) for b, n, lo, hi in result]

    def chunks(self, size: int) -> Iterator[list[V1Row]]:
        """Every row in id order, `size` at a time."""
        try:
            result = self.conn.execution_options(yield_per=size).execute(text(f"{_SELECT} ORDER BY id"))
            for part in result.partitions(size):
                yield [_row(r) for r in part]
        except DBAPIError as exc:
            raise InputError(f"reading {V1_TABLE} from {self.display_url} failed ({_reason(exc)})") from None

    def sample(self, n: int) -> list[V1Row]:
        """Up to `n` rows picked at random."""
        return self._rows(f"{_SELECT} ORDER BY random() LIMIT {int(n)}")

    # -- helpers --------------------------------------------------------------------------------

    def _execute(self, sql: str):  # noqa: ANN202 - a SQLAlchemy Result
        try:
            return self.conn.execute(text(sql))
        except DBAPIError as exc:
            raise InputError(f"reading {V1_TABLE} from {self.display_url} failed ({_reason(exc)})") from None

    def _rows(self, sql: str) -> list[V1Row]:
        return [_row(r) for r in self._execute(sql).all()]


def _row(r: Any) -> V1Row:
    i, prompt, response, provider, tokens, latency, metadata, batch_id, created = r
    return V1Row(int(i), prompt, response, provider, tokens, latency, _metadata(metadata), batch_id, _utc(created))


def _metadata(value: Any) -> Any:
    """v1 metadata: JSON text (SQLite, text columns) or already parsed (JSON columns); unparseable text stays text."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _utc(value: Any) -> datetime | None:
    """A v1 timestamp as an aware UTC datetime; naive times (SQLite text, timestamp columns) are taken as UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InputError(f"{V1_TABLE}.created_at holds {value!r}, which is not a timestamp") from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    raise InputError(f"{V1_TABLE}.created_at holds {value!r}, which is not a timestamp")


def _iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _reason(exc: DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
