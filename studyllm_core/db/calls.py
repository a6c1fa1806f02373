"""RawCallRepository: write and read the immutable `raw_calls` log.

Bulk inserts use COPY with ids reserved up front, so one chunk costs two round trips whatever its
size and the returned ids follow input order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from studyllm_core.db.engine import transaction, translate_db_errors
from studyllm_core.db.jsonutil import dumps
from studyllm_core.db.vocabulary import CALL_STATUSES, PROMPT_TSVECTOR_SQL
from studyllm_core.logging_config import get_logger

log = get_logger("db")

COPY_CHUNK = 10_000
_COLUMNS = (
    "id", "provider", "model", "modality", "status", "request_json", "response_json", "error_json",
    "latency_ms", "tokens_json", "metadata_json", "request_hash", "created_at",
)


@dataclass
class NewCall:
    """A provider attempt to record. `created_at` defaults to the insert time."""

    provider: str
    model: str
    status: str
    request_json: dict[str, Any]
    modality: str = "text"
    response_json: dict[str, Any] | None = None
    error_json: dict[str, Any] | None = None
    latency_ms: float | None = None
    tokens_json: dict[str, Any] | None = None
    metadata_json: dict[str, Any] | None = None
    request_hash: str | None = None
    created_at: datetime | None = None


@dataclass(frozen=True)
class StoredCall:
    """A recorded attempt as read back from the database."""

    id: int
    provider: str
    model: str
    modality: str
    status: str
    request_json: dict[str, Any]
    response_json: dict[str, Any] | None
    error_json: dict[str, Any] | None
    latency_ms: float | None
    tokens_json: dict[str, Any] | None
    metadata_json: dict[str, Any] | None
    request_hash: str | None
    created_at: datetime


@dataclass
class CallFilter:
    """Filters shared by listing and counting calls; None means no constraint."""

    provider: str | None = None
    model: str | None = None
    status: str | None = None
    modality: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    ids: Sequence[int] | None = field(default=None)
    group_id: int | None = None  # members of this group only
    group_ids: Sequence[int] | None = None  # members of any of these groups (a group and its descendants)

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses, params = [], {}
        for name in ("provider", "model", "status", "modality"):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{name} = :{name}")
                params[name] = value
        if self.since is not None:
            clauses.append("created_at >= :since")
            params["since"] = self.since
        if self.until is not None:
            clauses.append("created_at < :until")
            params["until"] = self.until
        if self.ids is not None:
            clauses.append("id = ANY(:ids)")
            params["ids"] = list(self.ids)
        if self.group_id is not None:
            clauses.append("id IN (SELECT call_id FROM group_members WHERE group_id = :group_id)")
            params["group_id"] = self.group_id
        if self.group_ids is not None:
            clauses.append("id IN (SELECT call_id FROM group_members WHERE group_id = ANY(:group_ids))")
            params["group_ids"] = list(self.group_ids)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


_SELECT = "SELECT " + ", ".join(_COLUMNS) + " FROM raw_calls"


class RawCallRepository:
    """Append-only access to `raw_calls`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- writes ---------------------------------------------------------------------------------

    def insert(self, call: NewCall) -> int:
        """Record one attempt and return its id."""
        return self.insert_many([call])[0]

    def insert_many(
        self, calls: Iterable[NewCall], *, chunk_size: int = COPY_CHUNK, conn: Connection | None = None
    ) -> list[int]:
        """Record many attempts with COPY, one transaction per chunk; ids are returned in input order.

        With `conn`, everything goes into the caller's transaction instead.
        """
        ids: list[int] = []
        chunk: list[NewCall] = []
        for call in calls:
            _validate(call)
            chunk.append(call)
            if len(chunk) >= chunk_size:
                ids.extend(self._copy_chunk(chunk, conn))
                chunk = []
        if chunk:
            ids.extend(self._copy_chunk(chunk, conn))
        return ids

    def _copy_chunk(self, chunk: list[NewCall], outer: Connection | None) -> list[int]:
        with translate_db_errors(f"recording {len(chunk)} raw calls"), transaction(self.engine, outer) as conn:
            # Ids and the transaction's timestamp in one round trip.
            rows = conn.execute(
                text("SELECT nextval(pg_get_serial_sequence('raw_calls', 'id')), now() FROM generate_series(1, :n)"),
                {"n": len(chunk)},
            ).all()
            ids = [int(row[0]) for row in rows]
            now = rows[0][1]
            cursor = conn.connection.driver_connection.cursor()
            with cursor.copy(f"COPY raw_calls ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
                # JSON goes in as text that the server parses into jsonb: cheaper than per-value adapters.
                for call_id, c in zip(ids, chunk, strict=True):
                    copy.write_row(
                        (
                            call_id, c.provider, c.model, c.modality, c.status, _json_text(c.request_json),
                            _json_text(c.response_json), _json_text(c.error_json), c.latency_ms,
                            _json_text(c.tokens_json), _json_text(c.metadata_json), c.request_hash, c.created_at or now,
                        )
                    )
        log.debug("recorded %d raw calls", len(chunk))
        return ids

    # -- reads ----------------------------------------------------------------------------------

    def get(self, call_id: int) -> StoredCall | None:
        """One call by id, or None."""
        found = self.list(CallFilter(ids=[call_id]), limit=1)
        return found[0] if found else None

    def list(
        self,
        filters: CallFilter | None = None,
        *,
        limit: int = 100,
        offset: int = 0,
        after_id: int | None = None,
        newest_first: bool = False,
    ) -> list[StoredCall]:
        """Calls matching `filters`, ordered by id; page with `offset` or, cheaper, `after_id`."""
        where, params = (filters or CallFilter()).where()
        if after_id is not None:
            op = "<" if newest_first else ">"
            where += (" AND " if where else " WHERE ") + f"id {op} :after_id"
            params["after_id"] = after_id
        order = "DESC" if newest_first else "ASC"
        sql = f"{_SELECT}{where} ORDER BY id {order} LIMIT :limit OFFSET :offset"
        params.update(limit=limit, offset=offset)
        with translate_db_errors("listing raw calls"), self.engine.connect() as conn:
            return [StoredCall(*row) for row in conn.execute(text(sql), params)]

    def count(self, filters: CallFilter | None = None) -> int:
        """Number of calls matching `filters`."""
        where, params = (filters or CallFilter()).where()
        with translate_db_errors("counting raw calls"), self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM raw_calls{where}"), params).scalar_one())

    def provider_stats(self, filters: CallFilter | None = None) -> list[dict[str, Any]]:
        """Per provider and model: calls, successes, failures, mean latency and total tokens."""
        where, params = (filters or CallFilter()).where()
        sql = f"""
            SELECT provider, model, count(*) AS calls,
                   count(*) FILTER (WHERE status = 'success') AS succeeded,
                   count(*) FILTER (WHERE status <> 'success') AS failed,
                   avg(latency_ms) AS avg_latency_ms,
                   coalesce(sum((tokens_json->>'total_tokens')::bigint), 0)::bigint AS total_tokens
            FROM raw_calls{where}
            GROUP BY provider, model ORDER BY provider, model
        """
        with translate_db_errors("computing provider stats"), self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(text(sql), params)]

    def successes_in_group(self, group_id: int, hashes: Sequence[str], *, chunk_size: int = 10_000) -> dict[str, StoredCall]:
        """The first successful call of each of `hashes` among the group's members (one query per chunk)."""
        sql = text(
            f"SELECT DISTINCT ON (request_hash) {_SELECT.removeprefix('SELECT ')} "
            "WHERE status = 'success' AND request_hash = ANY(:h) "
            "AND id IN (SELECT call_id FROM group_members WHERE group_id = :g) ORDER BY request_hash, id"
        )
        found: dict[str, StoredCall] = {}
        with translate_db_errors("reading the answers recorded in the group"), self.engine.connect() as conn:
            for start in range(0, len(hashes), chunk_size):
                for row in conn.execute(sql, {"g": group_id, "h": list(hashes[start : start + chunk_size])}):
                    call = StoredCall(*row)
                    found[str(call.request_hash)] = call
        return found

    def search_prompts(self, query: str, *, limit: int = 50) -> list[StoredCall]:
        """Calls whose prompt matches `query` (web-search syntax), through the full-text index."""
        sql = (
            f"{_SELECT} WHERE {PROMPT_TSVECTOR_SQL} @@ websearch_to_tsquery('simple', :q) "
            "ORDER BY id DESC LIMIT :limit"
        )
        with translate_db_errors("searching prompts"), self.engine.connect() as conn:
            return [StoredCall(*row) for row in conn.execute(text(sql), {"q": query, "limit": limit})]


def _json_text(value: Any) -> str | None:
    return None if value is None else dumps(value)


def _validate(call: NewCall) -> None:
    if call.status not in CALL_STATUSES:
        raise ValueError(f"raw call status must be one of {', '.join(CALL_STATUSES)}, not {call.status!r}")
    if call.status != "success" and call.error_json is None:
        raise ValueError("a failed raw call needs error_json describing the failure")
