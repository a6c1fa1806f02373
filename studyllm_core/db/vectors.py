"""The embedding cache in pgvector, and the leases that let processes share the work of filling it.

Reads and writes are set-based: one binary query per chunk of hashes, COPY for new vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from psycopg.errors import UniqueViolation
from sqlalchemy import Connection, Engine, text

from studyllm_core.db.engine import translate_db_errors

LOOKUP_CHUNK = 10_000
_VECTOR_COLUMNS = "(request_hash, provider, model, dimension, text, vector, norm, raw_call_id)"
_VECTOR_TYPES = ["varchar", "varchar", "varchar", "int4", "text", "vector", "float8", "int8"]


def _copy_rows(cursor, table: str, rows: list[tuple]) -> None:  # noqa: ANN001 - a psycopg cursor
    with cursor.copy(f"COPY {table} {_VECTOR_COLUMNS} FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(_VECTOR_TYPES)
        for row in rows:
            copy.write_row(row)


@dataclass
class NewVectors:
    """Vectors produced by one successful raw call, row i for `request_hashes[i]`."""

    request_hashes: list[str]
    texts: list[str]
    vectors: np.ndarray  # (n, d) float32
    provider: str
    model: str
    raw_call_id: int


class VectorRepository:
    """Cache look-ups, inserts and lease bookkeeping on `embedding_vectors` / `embedding_leases`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def lookup(self, hashes: Sequence[str], *, chunk_size: int = LOOKUP_CHUNK) -> dict[str, tuple[np.ndarray, int]]:
        """(vector, raw_call_id) for each hash that is cached (binary transfer, one query per chunk)."""
        found: dict[str, tuple[np.ndarray, int]] = {}
        with translate_db_errors("reading cached embeddings"), self.engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()
            for start in range(0, len(hashes), chunk_size):
                chunk = list(hashes[start : start + chunk_size])
                cursor.execute(
                    "SELECT request_hash, vector, raw_call_id FROM embedding_vectors WHERE request_hash = ANY(%s)",
                    (chunk,),
                    binary=True,
                )
                for request_hash, vector, raw_call_id in cursor.fetchall():
                    found[request_hash] = (vector.to_numpy(), raw_call_id)
        return found

    def known_dimension(self, provider: str, model: str) -> int | None:
        """The dimension of vectors already cached for this provider and model, if any."""
        sql = text("SELECT dimension FROM embedding_vectors WHERE provider = :p AND model = :m LIMIT 1")
        with translate_db_errors("reading the cached dimension"), self.engine.connect() as conn:
            return conn.execute(sql, {"p": provider, "m": model}).scalar_one_or_none()

    @staticmethod
    def store(conn: Connection, batch: NewVectors) -> int:
        """Insert vectors inside the caller's transaction and drop their leases; returns rows added.

        COPY straight into the table is the fast path (leases make us the only writer of these
        hashes). If a hash turned up meanwhile anyway (a lease taken over from a session that
        was slow, not dead), the COPY is undone and the rows go in through ON CONFLICT DO NOTHING.
        """
        cursor = conn.connection.driver_connection.cursor()
        norms = np.linalg.norm(batch.vectors.astype(np.float64), axis=1)
        dimension = int(batch.vectors.shape[1])
        rows = [
            (h, batch.provider, batch.model, dimension, t, v, float(n), batch.raw_call_id)
            for h, t, v, n in zip(batch.request_hashes, batch.texts, batch.vectors, norms, strict=True)
        ]
        savepoint = conn.begin_nested()
        try:
            _copy_rows(cursor, "embedding_vectors", rows)
            savepoint.commit()
            added = len(rows)
        except UniqueViolation:
            savepoint.rollback()
            cursor.execute(
                "CREATE TEMP TABLE IF NOT EXISTS _stage_vectors (LIKE embedding_vectors INCLUDING DEFAULTS) "
                "ON COMMIT DROP"
            )
            _copy_rows(cursor, "_stage_vectors", rows)
            cursor.execute(
                "INSERT INTO embedding_vectors SELECT * FROM _stage_vectors ON CONFLICT (request_hash) DO NOTHING"
            )
            added = cursor.rowcount
        cursor.execute("DELETE FROM embedding_leases WHERE request_hash = ANY(%s)", (batch.request_hashes,))
        return added

    # -- leases ---------------------------------------------------------------------------------

    @staticmethod
    def claim(conn: Connection, hashes: Sequence[str]) -> set[str]:
        """Lease the hashes that are neither cached nor held by a live session; returns those now ours.

        `conn` must stay open while the work is done: its session is the lease's owner, and when it
        ends (even by a crash) the leases become free for others. A pooled connection outlives its
        user, so call `release_all` before giving it back.
        """
        if not hashes:
            return set()
        sql = """
            WITH me AS (SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())
            INSERT INTO embedding_leases (request_hash, owner_pid, owner_started)
            SELECT h, me.pid, me.backend_start
            FROM unnest(CAST(%s AS varchar[])) AS h, me
            WHERE NOT EXISTS (SELECT 1 FROM embedding_vectors v WHERE v.request_hash = h)
            ORDER BY h
            ON CONFLICT (request_hash) DO UPDATE
                SET owner_pid = EXCLUDED.owner_pid, owner_started = EXCLUDED.owner_started, claimed_at = now()
                WHERE embedding_leases.owner_pid = EXCLUDED.owner_pid
                   OR NOT EXISTS (
                        SELECT 1 FROM pg_stat_activity a
                        WHERE a.pid = embedding_leases.owner_pid
                          AND (a.backend_start IS NULL OR embedding_leases.owner_started IS NULL
                               OR a.backend_start = embedding_leases.owner_started))
            RETURNING request_hash
        """
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute(sql, (sorted(hashes),))
        claimed = [row[0] for row in cursor.fetchall()]
        if not claimed:
            return set()
        # The insert may have waited on a peer that committed its vectors and dropped its leases
        # meanwhile; its NOT EXISTS check ran on the older snapshot. A new statement sees the commit.
        cursor.execute("SELECT request_hash FROM embedding_vectors WHERE request_hash = ANY(%s)", (claimed,))
        done = [row[0] for row in cursor.fetchall()]
        if done:
            cursor.execute("DELETE FROM embedding_leases WHERE request_hash = ANY(%s)", (done,))
        return set(claimed) - set(done)

    @staticmethod
    def release(conn: Connection, hashes: Sequence[str]) -> None:
        """Give up leases (after a failure) so another process may try these texts."""
        if hashes:
            cursor = conn.connection.driver_connection.cursor()
            cursor.execute("DELETE FROM embedding_leases WHERE request_hash = ANY(%s)", (list(hashes),))

    @staticmethod
    def release_all(conn: Connection) -> None:
        """Give up every lease this session holds (before its connection goes back to the pool)."""
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute("DELETE FROM embedding_leases WHERE owner_pid = pg_backend_pid()")
