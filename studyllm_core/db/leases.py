"""The leases that let processes share the work of filling the embedding cache (`embedding_leases`).

A lease records the owning database session (`owner_pid` and its `backend_start`): a claim succeeds
for hashes that are neither cached nor held by a live session, so a lease whose session is gone
(crashed or killed process) is taken over at once, with no timeout.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection

from studyllm_core.db.embedding_cache import HASHES, db_errors, hash_list


class EmbeddingLeases:
    """Lease bookkeeping on `embedding_leases`, inside a session that stays open while the work is done."""

    @staticmethod
    @db_errors("leasing texts to embed")
    def claim(conn: Connection, hashes: Sequence[str]) -> set[str]:
        """Lease the hashes that are neither cached nor held by a live session; returns those now ours.

        `conn` must stay open while the work is done: its session is the lease's owner, and when it
        ends (even by a crash) the leases become free for others. A pooled connection outlives its
        user, so call `release_all` before giving it back.
        """
        if not hashes:
            return set()
        sql = f"""
            WITH me AS (SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())
            INSERT INTO embedding_leases (request_hash, owner_pid, owner_started)
            SELECT h, me.pid, me.backend_start
            FROM unnest({HASHES}) AS h, me
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
        cursor.execute(sql, (hash_list(sorted(hashes)),))
        claimed = [row[0] for row in cursor.fetchall()]
        if not claimed:
            return set()
        # Cached hashes are dropped by a second statement, which sees every commit before it: those made
        # before the insert, and those of a peer the insert waited on (its lease row was ours to take
        # once that peer committed its vectors). The callers looked the hashes up just before, so these
        # are rare: checking the cache inside the insert as well cost more (a second probe per hash).
        cursor.execute(f"SELECT request_hash FROM embedding_vectors WHERE request_hash = ANY({HASHES})", (hash_list(claimed),))
        done = [row[0] for row in cursor.fetchall()]
        if done:
            cursor.execute(f"DELETE FROM embedding_leases WHERE request_hash = ANY({HASHES})", (hash_list(done),))
        return set(claimed) - set(done)

    @staticmethod
    @db_errors("releasing leases")
    def release(conn: Connection, hashes: Sequence[str]) -> None:
        """Give up leases (after a failure) so another process may try these texts."""
        if hashes:
            cursor = conn.connection.driver_connection.cursor()
            cursor.execute(f"DELETE FROM embedding_leases WHERE request_hash = ANY({HASHES})", (hash_list(hashes),))

    @staticmethod
    @db_errors("releasing leases")
    def release_all(conn: Connection) -> None:
        """Give up every lease this session holds (before its connection goes back to the pool)."""
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute("DELETE FROM embedding_leases WHERE owner_pid = pg_backend_pid()")
