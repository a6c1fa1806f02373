"""Import a seed-era v1 database (`inference_runs`) into `raw_calls`, idempotently, then validate it.

Mapping of one v1 row:

- `request_json` {"prompt": prompt}; `response_json` {"text": response} (None when response is NULL);
- `status` "failed" when the response is NULL or blank or the v1 metadata has a non-null "error"
  (then `error_json` says which), else "success"; modality "text";
- `model` from the v1 metadata's "model" (or "deployment"), else "unknown" (v1 kept no model column);
- `tokens_json` {"total_tokens": tokens} (v1 kept one count, so cost estimates price it as input);
- `latency_ms` as is (a negative or non-finite value, which the v2 schema refuses, becomes NULL);
- `created_at` from v1, naive times read as UTC;
- `metadata_json` {"legacy": {"metadata": <original>, "v1_id", "batch_id", "source", "key"}};
- `request_hash` = the key "legacy:<source fingerprint>:<v1 id>", which makes a re-run skip the
  rows already there (one indexed look-up per chunk).

Each v1 batch becomes a `batch` group "legacy:<fingerprint>:batch:<batch_id>", linked by
`contains` from the `dataset` group "legacy:<fingerprint>", which also holds the rows without a
batch. All writes happen in one transaction (nothing is kept when anything fails), under an
advisory lock so two imports of one source cannot interleave. The v1 database is only read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from studyllm_core.db.calls import NewCall, RawCallRepository
from studyllm_core.db.engine import translate_db_errors
from studyllm_core.db.groups import GroupRepository
from studyllm_core.db.jsonutil import dumps
from studyllm_core.db.legacy import V1_TABLE, BatchStats, LegacySource, V1Row
from studyllm_core.db.vocabulary import ROLE_OUTPUT
from studyllm_core.logging_config import get_logger

ProgressFn = Callable[[int, int], None]  # (done, total)

log = get_logger("services.legacy")

CHUNK = 10_000
SAMPLE = 1_000
PARITY_FIELDS = ("prompt", "response", "provider", "tokens", "latency_ms", "created_at", "metadata", "batch_id", "status")
MAX_EXAMPLES = 10


def legacy_key(fingerprint: str, v1_id: int) -> str:
    """The stable identity of one imported v1 row (stored as request_hash)."""
    return f"legacy:{fingerprint}:{v1_id}"


def batch_group_name(fingerprint: str, batch_id: Any) -> str:
    return f"legacy:{fingerprint}:batch:{batch_id}"


def to_call(row: V1Row, fingerprint: str) -> NewCall:
    """The raw call a v1 row becomes (see the module docstring for each field)."""
    meta = row.metadata if isinstance(row.metadata, dict) else {}
    error = meta.get("error")
    if error is not None:
        status, error_json = "failed", {"type": "legacy_error", "message": str(error), "retryable": False, "attempt": 0}
    elif row.response is None or not str(row.response).strip():
        status, error_json = "failed", {"type": "empty_response", "message": "the v1 row has no response",
                                        "retryable": False, "attempt": 0}
    else:
        status, error_json = "success", None
    model = meta.get("model") or meta.get("deployment")
    latency = row.latency_ms if isinstance(row.latency_ms, (int, float)) and math.isfinite(row.latency_ms) and row.latency_ms >= 0 else None
    key = legacy_key(fingerprint, row.id)
    return NewCall(
        provider=str(row.provider) if row.provider is not None else "unknown",
        model=str(model) if isinstance(model, (str, int)) else "unknown",
        modality="text",
        status=status,
        request_json={"prompt": row.prompt},
        response_json=None if row.response is None else {"text": row.response},
        error_json=error_json,
        latency_ms=float(latency) if latency is not None else None,
        tokens_json=None if row.tokens is None else {"total_tokens": row.tokens},
        metadata_json={"legacy": {"metadata": row.metadata, "v1_id": row.id, "batch_id": row.batch_id,
                                  "source": fingerprint, "key": key}},
        request_hash=key,
        created_at=row.created_at,
    )


@dataclass
class ImportReport:
    """What an import did and how v2 compares with v1 afterwards."""

    source: dict[str, Any]
    group: dict[str, Any]
    imported: int
    already_present: int
    statuses: dict[str, int]
    rows: dict[str, Any]
    batches: dict[str, Any]
    time_range: dict[str, Any]
    sample: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def parity(self) -> bool:
        return all(part["match"] for part in (self.rows, self.batches, self.time_range, self.sample))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "group": self.group, "imported": self.imported,
            "already_present": self.already_present, "statuses": self.statuses, "rows": self.rows,
            "batches": self.batches, "time_range": self.time_range, "sample": self.sample,
            "parity": self.parity, "notes": self.notes,
        }


class LegacyImporter:
    """Bring a v1 database into raw_calls and check the result field by field."""

    def __init__(self, engine: Engine, *, chunk_size: int = CHUNK, sample_size: int = SAMPLE) -> None:
        self.engine = engine
        self.chunk_size = chunk_size
        self.sample_size = sample_size
        self.calls = RawCallRepository(engine)
        self.groups = GroupRepository(engine)

    def run(self, url: str, *, progress: ProgressFn | None = None) -> ImportReport:
        """Import what is new from the v1 database at `url`, then validate (InputError before any write on bad input).

        `progress` gets (v1 rows read, v1 rows) after each chunk."""
        with LegacySource(url) as source:
            extra = source.check_schema()
            fingerprint = source.fingerprint()  # InputError on an empty table
            batches = _merge(source.batches())
            total = sum(b.rows for b in batches)  # the GROUP BY counted every row, NULL batch ids too
            imported, present, statuses, group_ids, umbrella = self._import(
                source, fingerprint, batches, lambda done: progress(done, total) if progress else None
            )
            rows, batch_part, time_part = self._compare_counts(batches, total, group_ids)
            sample = self._sample_parity(source, fingerprint, group_ids)
        return ImportReport(
            source={"url": source.display_url, "kind": source.kind, "table": V1_TABLE, "fingerprint": fingerprint},
            group={"id": umbrella, "name": f"legacy:{fingerprint}", "batches": len(group_ids) - 1},
            imported=imported, already_present=present, statuses=statuses,
            rows=rows, batches=batch_part, time_range=time_part, sample=sample,
            notes=[f"v1 columns not imported: {', '.join(extra)}"] if extra else [],
        )

    # -- import ---------------------------------------------------------------------------------

    def _import(
        self, source: LegacySource, fingerprint: str, batches: list[BatchStats], read: Callable[[int], None]
    ) -> tuple[int, int, dict[str, int], dict[Any, int], int]:
        imported = present = 0
        statuses: dict[str, int] = {}
        with translate_db_errors("importing the v1 database"), self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"studyllm.legacy:{fingerprint}"})
            umbrella = self.groups.ensure_groups(
                "dataset", [f"legacy:{fingerprint}"],
                metadata=[{"legacy": {"source": fingerprint, "url": source.display_url, "table": V1_TABLE}}], conn=conn,
            )[f"legacy:{fingerprint}"]
            named = [b for b in batches if b.batch_id is not None]
            names = [batch_group_name(fingerprint, b.batch_id) for b in named]
            ids = self.groups.ensure_groups(
                "batch", names, metadata=[{"legacy": {"source": fingerprint, "batch_id": b.batch_id}} for b in named], conn=conn
            )
            group_ids: dict[Any, int] = {_batch_key(b.batch_id): ids[n] for b, n in zip(named, names, strict=True)}
            self.groups.link_many(umbrella, list(group_ids.values()), "contains", conn=conn)
            group_ids[None] = umbrella
            for rows in source.chunks(self.chunk_size):
                new = self._new_rows(conn, fingerprint, rows)
                present += len(rows) - len(new)
                if not new:
                    read(imported + present)
                    continue
                calls = [to_call(r, fingerprint) for r in new]
                call_ids = self.calls.insert_many(calls, chunk_size=self.chunk_size, conn=conn)
                self.groups.add_memberships([group_ids[_batch_key(r.batch_id)] for r in new], call_ids, role=ROLE_OUTPUT, conn=conn)
                imported += len(new)
                for c in calls:
                    statuses[c.status] = statuses.get(c.status, 0) + 1
                log.info("imported %d v1 rows (%d so far)", len(new), imported)
                read(imported + present)
        return imported, present, statuses, group_ids, umbrella

    @staticmethod
    def _new_rows(conn: Connection, fingerprint: str, rows: list[V1Row]) -> list[V1Row]:
        """The rows of a chunk not imported yet (one indexed query)."""
        keys = [legacy_key(fingerprint, r.id) for r in rows]
        sql = text("SELECT request_hash FROM raw_calls WHERE request_hash = ANY(CAST(:keys AS varchar[]))")
        done = set(conn.execute(sql, {"keys": keys}).scalars())
        return [r for r, k in zip(rows, keys, strict=True) if k not in done]

    # -- validation -----------------------------------------------------------------------------

    def _compare_counts(
        self, batches: list[BatchStats], total: int, group_ids: dict[Any, int]
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Row counts, batch sizes and time ranges of v1 against the imported groups."""
        by_group = self._v2_groups(list(group_ids.values()))
        v2_rows = sum(n for n, _, _ in by_group.values())
        rows = {"v1": total, "v2": v2_rows, "match": total == v2_rows}

        mismatched = []
        for b in batches:
            v2 = by_group.get(group_ids[_batch_key(b.batch_id)], (0, None, None))[0]
            if v2 != b.rows:
                mismatched.append({"batch_id": b.batch_id, "v1": b.rows, "v2": v2})
        sizes = sorted(b.rows for b in batches if b.batch_id is not None)
        batch_part = {
            "v1": sum(1 for b in batches if b.batch_id is not None),
            "v2": len(group_ids) - 1,
            "rows_without_batch": next((b.rows for b in batches if b.batch_id is None), 0),
            "sizes": {"min": sizes[0], "median": sizes[len(sizes) // 2], "max": sizes[-1]} if sizes else None,
            "mismatched": mismatched[:MAX_EXAMPLES],
            "match": not mismatched,
        }
        v1_range = [min((b.first_at for b in batches if b.first_at), default=None),
                    max((b.last_at for b in batches if b.last_at), default=None)]
        v2_range = [min((lo for _, lo, _ in by_group.values() if lo), default=None),
                    max((hi for _, _, hi in by_group.values() if hi), default=None)]
        time_part = {"v1": [_iso(t) for t in v1_range], "v2": [_iso(t) for t in v2_range], "match": v1_range == v2_range}
        return rows, batch_part, time_part

    def _v2_groups(self, group_ids: list[int]) -> dict[int, tuple[int, datetime | None, datetime | None]]:
        """Per import group: member calls and their time range (one aggregate query)."""
        sql = text(
            "SELECT m.group_id, count(*), min(r.created_at), max(r.created_at) "
            "FROM group_members m JOIN raw_calls r ON r.id = m.call_id "
            "WHERE m.group_id = ANY(CAST(:ids AS bigint[])) GROUP BY m.group_id"
        )
        with translate_db_errors("validating the import"), self.engine.connect() as conn:
            return {int(g): (int(n), lo, hi) for g, n, lo, hi in conn.execute(sql, {"ids": group_ids})}

    def _sample_parity(self, source: LegacySource, fingerprint: str, group_ids: dict[Any, int]) -> dict[str, Any]:
        """Compare sampled v1 rows with their raw calls field by field (two queries in all)."""
        sample = source.sample(self.sample_size)
        keys = [legacy_key(fingerprint, r.id) for r in sample]
        sql = text(
            "SELECT r.request_hash, r.provider, r.status, r.request_json, r.response_json, r.tokens_json, r.latency_ms, "
            "r.created_at, r.metadata_json, m.group_id "
            "FROM raw_calls r LEFT JOIN group_members m ON m.call_id = r.id AND m.group_id = ANY(CAST(:groups AS bigint[])) "
            "WHERE r.request_hash = ANY(CAST(:keys AS varchar[]))"
        )
        with translate_db_errors("validating the import"), self.engine.connect() as conn:
            stored = {row[0]: row for row in conn.execute(sql, {"keys": keys, "groups": list(group_ids.values())})}
        mismatches = {name: 0 for name in PARITY_FIELDS}
        missing, examples = 0, []
        for row, key in zip(sample, keys, strict=True):
            got = stored.get(key)
            if got is None:
                missing += 1
                continue
            for name in _differences(row, got, group_ids, to_call(row, fingerprint)):
                mismatches[name] += 1
                if len(examples) < MAX_EXAMPLES:
                    examples.append({"v1_id": row.id, "field": name})
        return {
            "rows": len(sample), "missing": missing, "fields": list(PARITY_FIELDS), "mismatches": mismatches,
            "examples": examples, "match": missing == 0 and not any(mismatches.values()),
        }


def _differences(v1: V1Row, got: Any, group_ids: dict[Any, int], expected: NewCall) -> list[str]:
    """Names of the fields where the stored call does not hold the v1 value."""
    _, provider, status, request, response, tokens, latency, created, metadata, group_id = got
    legacy = (metadata or {}).get("legacy", {})
    checks = {
        "prompt": request.get("prompt") == _stored_text(v1.prompt),
        "response": (response is None and v1.response is None) or (response or {}).get("text") == _stored_text(v1.response),
        "provider": provider == (v1.provider if v1.provider is not None else "unknown"),
        "tokens": (tokens is None and v1.tokens is None) or (tokens or {}).get("total_tokens") == v1.tokens,
        "latency_ms": latency == expected.latency_ms and (latency is None) == (expected.latency_ms is None),
        "created_at": created == v1.created_at,
        "metadata": legacy.get("metadata") == _stored_json(v1.metadata) and legacy.get("v1_id") == v1.id,
        "batch_id": legacy.get("batch_id") == _stored_json(v1.batch_id) and group_id == group_ids[_batch_key(v1.batch_id)],
        "status": status == expected.status,
    }
    return [name for name in PARITY_FIELDS if not checks[name]]


def _stored_text(value: Any) -> Any:
    """A v1 value as JSONB gives it back (NUL characters cannot be stored in JSONB text)."""
    return value.replace("\x00", "") if isinstance(value, str) else value


def _stored_json(value: Any) -> Any:
    return json.loads(dumps(value))


def _batch_key(batch_id: Any) -> str | None:
    """The group a batch id maps to: by its text (SQLite may hold 7 and "7" in one column: one batch)."""
    return None if batch_id is None else str(batch_id)


def _merge(batches: list[BatchStats]) -> list[BatchStats]:
    """Batch statistics with ids of equal text combined, ordered by id text (rows without a batch last)."""
    merged: dict[str | None, BatchStats] = {}
    for b in batches:
        key = _batch_key(b.batch_id)
        old = merged.get(key)
        if old is None:
            merged[key] = b
        else:
            times = [t for t in (old.first_at, old.last_at, b.first_at, b.last_at) if t]
            merged[key] = BatchStats(old.batch_id, old.rows + b.rows, min(times, default=None), max(times, default=None))
    return sorted(merged.values(), key=lambda b: (b.batch_id is None, str(b.batch_id)))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
