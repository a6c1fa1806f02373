"""The embedding cache in pgvector: look-ups and inserts on `embedding_vectors`, and which cached
embeddings a group used (`group_embeddings`).

Reads and writes are set-based: one binary query per chunk of hashes, COPY for new vectors. The
leases that let processes share the work of filling the cache are in `leases.py`; nearest-neighbour
search over it is in `vector_search.py`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.errors import UniqueViolation
from psycopg.pq import Format
from sqlalchemy import Connection, Engine, text

from studyllm_core.db.engine import translate_db_errors

LOOKUP_CHUNK = 10_000
ADD_CHUNK = 50_000  # embedding ids per INSERT into group_embeddings


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
    return decode_vectors_blob(b"".join(blobs), dimension, len(blobs))


def decode_vectors_blob(blob: bytes, dimension: int, count: int) -> np.ndarray:
    """`count` pgvector binary values concatenated in one buffer (`string_agg(vector_send(...))`) as an
    (count, dimension) float32 matrix."""
    matrix = np.frombuffer(blob, dtype=">f4").reshape(count, dimension + 1)
    return matrix[:, 1:].astype(np.float32)


@dataclass
class CachedVectors:
    """Cached vectors found for a look-up: row i is the vector of `hashes[positions[i]]`."""

    positions: np.ndarray  # int64 positions in the looked-up hashes
    vectors: np.ndarray | None  # (n, d) float32; None when the look-up did not read vectors
    call_ids: np.ndarray  # int64 raw call that produced each vector
    ids: np.ndarray  # int64 embedding ids
    dimension: int = 0


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

    def lookup_chunks(
        self, hashes: Sequence[str], *, chunk_size: int = LOOKUP_CHUNK, vectors: bool = True
    ) -> Iterator[CachedVectors]:
        """The cached vectors of `hashes`, one `CachedVectors` per chunk of hashes.

        One query per chunk returning one row: Postgres aggregates the chunk's hashes, ids and vectors
        (pgvector's binary form, concatenated; every aggregate of one query sees the rows in the same
        order), so a million cached vectors cost a hundred rows to fetch and one numpy decode per
        chunk, not an object per vector. The look-up is the b-tree's (`request_hash = ANY`), whatever N.
        With `vectors=False` only which hashes are cached (and their ids) is read: no vector leaves the
        table, which is what a run that keeps no vectors (`studyllm embed` without --out) needs.
        """
        blob = "string_agg(vector_send(vector), ''::bytea)" if vectors else "NULL::bytea"
        sql = (
            f"SELECT array_agg(request_hash), array_agg(raw_call_id), array_agg(id), {blob}, "
            f"min(dimension), max(dimension) FROM embedding_vectors WHERE request_hash = ANY({HASHES})"
        )
        with translate_db_errors("reading cached embeddings"), self.engine.connect() as conn:
            for start in range(0, len(hashes), chunk_size):
                chunk = hashes[start : start + chunk_size]
                found, calls, ids, blob, low, high = conn.exec_driver_sql(sql, (hash_list(chunk),)).one()
                if not found:
                    continue
                if low != high:  # one model has one dimension: a mixed chunk is a damaged cache, named here
                    raise ValueError(f"cached vectors of one look-up have {low} and {high} dimensions")
                where = {h: start + i for i, h in enumerate(chunk)}
                yield CachedVectors(
                    positions=np.fromiter((where[h] for h in found), dtype=np.int64, count=len(found)),
                    vectors=decode_vectors_blob(blob, low, len(found)) if vectors else None,
                    dimension=low,
                    call_ids=np.asarray(calls, dtype=np.int64),
                    ids=np.asarray(ids, dtype=np.int64),
                )

    def lookup(self, hashes: Sequence[str], *, chunk_size: int = LOOKUP_CHUNK) -> dict[str, tuple[np.ndarray, int]]:
        """(vector, raw_call_id) for each hash that is cached, by hash (`lookup_chunks` as a dict, for small look-ups)."""
        found: dict[str, tuple[np.ndarray, int]] = {}
        for chunk in self.lookup_chunks(hashes, chunk_size=chunk_size):
            for position, vector, call_id in zip(chunk.positions, chunk.vectors, chunk.call_ids, strict=True):
                found[hashes[int(position)]] = (vector, int(call_id))
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

    def add_ids_to_group(self, group_id: int, ids: np.ndarray, *, chunk_size: int = ADD_CHUNK) -> None:
        """`add_to_group` by embedding id (what `lookup_chunks` returns): no second look-up of the hashes."""
        sql = ("INSERT INTO group_embeddings (group_id, embedding_id) SELECT %s, unnest(%s::int8[]) "
               "ON CONFLICT DO NOTHING")
        with translate_db_errors("recording the group's embeddings"), self.engine.begin() as conn:
            for start in range(0, len(ids), chunk_size):
                conn.exec_driver_sql(sql, (group_id, ids[start : start + chunk_size].tolist()))

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
