"""The embedding cache in pgvector: look-ups and inserts on `embedding_vectors`, and which cached
embeddings a group used (`group_embeddings`).

Reads and writes are set-based: one binary query per chunk of hashes, COPY for new vectors. The
leases that let processes share the work of filling the cache are in `leases.py`; nearest-neighbour
search over it is in `vector_search.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.errors import UniqueViolation
from psycopg.pq import Format
from sqlalchemy import Connection, Engine, text

from studyllm_core.db.engine import translate_db_errors

LOOKUP_CHUNK = 10_000


def db_errors(action: str):  # noqa: ANN202 - a decorator
    """Run a repository method inside translate_db_errors(action)."""

    def wrap(fn):  # noqa: ANN001, ANN202
        @functools.wraps(fn)
        def inner(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            with translate_db_errors(action):
                return fn(*args, **kwargs)

        return inner

    return wrap
_VECTOR_COLUMNS = "(request_hash, provider, model, dimension, text, vector, norm, raw_call_id, server)"
_VECTOR_TYPES = ["varchar", "varchar", "varchar", "int4", "text", "vector", "float8", "int8", "varchar"]


HASHES = "string_to_array(%s, ',')"  # the SQL side of `hash_list`


def hash_list(hashes: Sequence[str]) -> str:
    """Hashes as one comma-joined text for `HASHES`.

    Splitting one text on the server is about twice as fast, for a 10,000-hash look-up, as psycopg
    adapting a list of 10,000 strings to an array.
    """
    joined = ",".join(hashes)
    if joined.count(",") != max(len(hashes) - 1, 0):
        raise ValueError("a request hash contains a comma; hashes are hex digests")
    return joined


def _add_to_group(cursor, group_id: int, hashes: Sequence[str]) -> None:  # noqa: ANN001 - a psycopg cursor
    cursor.execute(
        "INSERT INTO group_embeddings (group_id, embedding_id) "
        f"SELECT %s, id FROM embedding_vectors WHERE request_hash = ANY({HASHES}) ON CONFLICT DO NOTHING",
        (group_id, hash_list(hashes)),
    )


class RawVectorLoader(Loader):
    """Load pgvector's binary format as bytes, to decode many rows at once with `decode_vectors`
    (register on a binary cursor: `cursor.adapters.register_loader("vector", RawVectorLoader)`)."""

    format = Format.BINARY

    def load(self, data: Buffer) -> bytes:
        return bytes(data)


def decode_vectors(blobs: Sequence[bytes], dimension: int) -> np.ndarray:
    """pgvector binary values of one dimension (int16 dim, int16 unused, big-endian float32s) as an
    (n, dimension) float32 matrix, decoded by one numpy call instead of one object per row."""
    matrix = np.frombuffer(b"".join(blobs), dtype=">f4").reshape(len(blobs), dimension + 1)
    return matrix[:, 1:].astype(np.float32)


def _copy_rows(cursor, table: str, rows: list[tuple]) -> None:  # noqa: ANN001 - a psycopg cursor
    with cursor.copy(f"COPY {table} {_VECTOR_COLUMNS} FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.set_types(_VECTOR_TYPES)
        for row in rows:
            copy.write_row(row)


@dataclass
class NewVectors:
    """Vectors produced by one successful raw call, row i for `request_hashes[i]`; they join `group_id`'s items."""

    request_hashes: list[str]
    texts: list[str]
    vectors: np.ndarray  # (n, d) float32
    provider: str
    model: str
    raw_call_id: int
    server: str = ""
    group_id: int | None = None


class EmbeddingCache:
    """Cache look-ups and inserts on `embedding_vectors`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def lookup(self, hashes: Sequence[str], *, chunk_size: int = LOOKUP_CHUNK) -> dict[str, tuple[np.ndarray, int]]:
        """(vector, raw_call_id) for each hash that is cached (binary transfer, one query per chunk).

        Vectors arrive as raw pgvector binary and are decoded per chunk by `decode_vectors`.
        """
        found: dict[str, tuple[np.ndarray, int]] = {}
        with translate_db_errors("reading cached embeddings"), self.engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()
            cursor.adapters.register_loader("vector", RawVectorLoader)
            for start in range(0, len(hashes), chunk_size):
                chunk = list(hashes[start : start + chunk_size])
                cursor.execute(
                    "SELECT request_hash, vector, raw_call_id, dimension FROM embedding_vectors "
                    f"WHERE request_hash = ANY({HASHES}) ORDER BY dimension",
                    (hash_list(chunk),),
                    binary=True,
                )
                rows = cursor.fetchall()
                # One decode per dimension present (normally one).
                begin = 0
                while begin < len(rows):
                    dim = rows[begin][3]
                    end = begin
                    while end < len(rows) and rows[end][3] == dim:
                        end += 1
                    matrix = decode_vectors([row[1] for row in rows[begin:end]], dim)
                    for row, vector in zip(rows[begin:end], matrix, strict=True):
                        found[row[0]] = (vector, row[2])
                    begin = end
        return found

    def known_dimension(self, provider: str, model: str, server: str = "") -> int | None:
        """The dimension of vectors already cached for this provider, model and server, if any."""
        sql = text("SELECT dimension FROM embedding_vectors WHERE provider = :p AND model = :m AND server = :s LIMIT 1")
        with translate_db_errors("reading the cached dimension"), self.engine.connect() as conn:
            return conn.execute(sql, {"p": provider, "m": model, "s": server}).scalar_one_or_none()

    def add_to_group(self, group_id: int, hashes: Sequence[str], *, chunk_size: int = LOOKUP_CHUNK) -> None:
        """Record that the group used the cached embeddings of `hashes` (one statement per chunk, idempotent)."""
        with translate_db_errors("recording the group's embeddings"), self.engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()
            for start in range(0, len(hashes), chunk_size):
                _add_to_group(cursor, group_id, hashes[start : start + chunk_size])

    @staticmethod
    @db_errors("storing embeddings")
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
            (h, batch.provider, batch.model, dimension, t, v, float(n), batch.raw_call_id, batch.server)
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
        cursor.execute(f"DELETE FROM embedding_leases WHERE request_hash = ANY({HASHES})", (hash_list(batch.request_hashes),))
        if batch.group_id is not None:
            _add_to_group(cursor, batch.group_id, batch.request_hashes)
        return added
