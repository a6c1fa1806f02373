"""The embedding cache in pgvector: look-ups and inserts on `embedding_vectors`, and which cached
embeddings a group used: content-addressed sets (`embedding_sets`, their items, and the groups that used
each; the `group_embeddings` view joins them).

Reads and writes are set-based: one binary query per chunk of hashes, COPY for new vectors. The
leases that let processes share the work of filling the cache are in `leases.py`; nearest-neighbour
search over it is in `vector_search.py`.
"""

from __future__ import annotations

import functools
import hashlib
import queue
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.errors import UniqueViolation
from psycopg.pq import Format
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from studyllm_core.db.engine import translate_db_errors

LOOKUP_CHUNK = 10_000
READERS = 2  # connections a look-up of several chunks reads on at once
ADD_CHUNK = 50_000  # embedding ids per INSERT into embedding_set_items


def db_errors(action: str):  # noqa: ANN202 - a decorator
    """Run a repository method inside translate_db_errors(action)."""

    def wrap(fn):  # noqa: ANN001, ANN202
        @functools.wraps(fn)
        def inner(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            with translate_db_errors(action):
                return fn(*args, **kwargs)

        return inner

    return wrap
_VECTOR_COLUMNS = "(id, provider, model, dimension, text, vector, norm, raw_call_id, server, request_hash)"
_VECTOR_TYPES = ["int8", "varchar", "varchar", "int4", "text", "vector", "float8", "int8", "varchar", "varchar"]


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


def _add_to_set(cursor, set_id: int, hashes: Sequence[str]) -> None:  # noqa: ANN001 - a psycopg cursor
    cursor.execute(
        "INSERT INTO embedding_set_items (set_id, embedding_id) "
        f"SELECT %s, id FROM embedding_vectors WHERE request_hash = ANY({HASHES}) ON CONFLICT DO NOTHING",
        (set_id, hash_list(hashes)),
    )


def _copy_set_items(cursor, set_id: int, ids: np.ndarray) -> None:  # noqa: ANN001 - a psycopg cursor
    """Add embeddings to a set by id with one binary COPY built by numpy (no Python object per row).

    Only for ids this transaction just inserted (so none is in the set yet): COPY has no ON CONFLICT.
    """
    row = np.dtype([("fields", ">i2"), ("set_len", ">i4"), ("set_id", ">i8"), ("id_len", ">i4"), ("id", ">i8")])
    rows = np.empty(len(ids), dtype=row)
    rows["fields"], rows["set_len"], rows["set_id"], rows["id_len"], rows["id"] = 2, 8, set_id, 8, ids
    with cursor.copy("COPY embedding_set_items (set_id, embedding_id) FROM STDIN WITH (FORMAT BINARY)") as copy:
        copy.write(_BINARY_COPY_HEADER + rows.tobytes() + _BINARY_COPY_TRAILER)


_BINARY_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_BINARY_COPY_TRAILER = (-1).to_bytes(2, "big", signed=True)


def set_digest(hashes: Sequence[str]) -> str:
    """The content address of a set of embeddings: sha256 over its members' request hashes (hex sha256
    digests, distinct), as 32-byte values in ascending order. Migration 0006 computes the same in SQL.

    Sorted by the first 8 bytes with numpy (a million hashes in well under a second; Python's sort of a
    million strings takes longer); only when two share those 8 bytes does the exact order come from sorted().
    """
    joined = "".join(hashes)
    if len(joined) != 64 * len(hashes):
        raise ValueError("set_digest takes hex sha256 request hashes")
    raw = np.frombuffer(bytes.fromhex(joined), dtype=np.uint8).reshape(len(hashes), 32)
    keys = np.ascontiguousarray(raw[:, :8]).view(">u8").ravel()
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    if len(ordered) > 1 and bool((ordered[1:] == ordered[:-1]).any()):
        return hashlib.sha256(bytes.fromhex("".join(sorted(hashes)))).hexdigest()
    return hashlib.sha256(raw[order].tobytes()).hexdigest()


@dataclass
class KnownSet:
    """A complete embedding set: its id and the raw calls that produced its members."""

    id: int
    call_ids: list[int]


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
    """Vectors produced by one successful raw call, row i for `request_hashes[i]`; they join the set `set_id`."""

    request_hashes: list[str]
    texts: list[str]
    vectors: np.ndarray  # (n, d) float32
    provider: str
    model: str
    raw_call_id: int
    server: str = ""
    set_id: int | None = None  # the embedding set (of a run) they join


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
        starts = range(0, len(hashes), chunk_size)
        readers = max(1, min(READERS, len(starts)))
        with translate_db_errors("reading cached embeddings"), ExitStack() as stack:
            # Binary results: the vectors' bytea arrives as bytes, not as hex text to parse. `readers`
            # connections read the next chunks while this one is decoded and placed (the server's part,
            # finding and reading the rows, is most of a chunk's time).
            idle: queue.SimpleQueue = queue.SimpleQueue()
            for _ in range(readers):
                idle.put(stack.enter_context(self.engine.connect()).connection.driver_connection.cursor(binary=True))

            def fetch(start: int) -> tuple:
                cursor = idle.get()
                try:
                    cursor.execute(sql, (hash_list(hashes[start : start + chunk_size]),))
                    return cursor.fetchone()
                finally:
                    idle.put(cursor)

            pool = stack.enter_context(ThreadPoolExecutor(readers, thread_name_prefix="studyllm-cache-read"))
            pending = deque(pool.submit(fetch, start) for start in starts[:readers])
            for i, start in enumerate(starts):
                found, calls, ids, blob, low, high = pending.popleft().result()
                if i + readers < len(starts):  # at most `readers` chunks in flight, in order
                    pending.append(pool.submit(fetch, starts[i + readers]))
                if not found:
                    continue
                if low != high:  # one model has one dimension: a mixed chunk is a damaged cache, named here
                    raise ValueError(f"cached vectors of one look-up have {low} and {high} dimensions")
                where = {h: start + j for j, h in enumerate(hashes[start : start + chunk_size])}
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

    # -- embedding sets: which embeddings a group's runs used --------------------------------------

    def new_set(self, group_id: int) -> int:
        """A new, still open set that `group_id` uses (a run fills it as it goes, then `seal_set`)."""
        with translate_db_errors("recording the group's embeddings"), self.engine.begin() as conn:
            set_id = int(conn.exec_driver_sql("INSERT INTO embedding_sets DEFAULT VALUES RETURNING id").scalar_one())
            self.use_set(conn, group_id, set_id)
        return set_id

    @staticmethod
    def use_set(conn: Connection, group_id: int, set_id: int) -> None:
        """Record, inside the caller's transaction, that `group_id` used the embeddings of set `set_id` (idempotent)."""
        conn.exec_driver_sql(
            "INSERT INTO group_embedding_sets (group_id, set_id) VALUES (%s, %s) ON CONFLICT DO NOTHING", (group_id, set_id)
        )

    def find_set(self, digest: str, size: int) -> KnownSet | None:
        """The complete set with this content address (and size), if a run stored one."""
        sql = "SELECT id, call_ids FROM embedding_sets WHERE digest = %s AND size = %s"
        with translate_db_errors("reading embedding sets"), self.engine.connect() as conn:
            found = conn.exec_driver_sql(sql, (digest, size)).one_or_none()
        return None if found is None else KnownSet(int(found[0]), [int(c) for c in found[1]])

    def seal_set(self, set_id: int, digest: str, size: int, call_ids: Sequence[int]) -> bool:
        """Give a filled set its content address, so later runs of the same embeddings reuse it; False when an
        equal set was sealed first (this one stays, unaddressed: its items are still this group's)."""
        sql = "UPDATE embedding_sets SET digest = %s, size = %s, call_ids = %s WHERE id = %s"
        with translate_db_errors("recording the group's embeddings"), self.engine.begin() as conn:
            savepoint = conn.begin_nested()
            try:
                conn.exec_driver_sql(sql, (digest, size, sorted(set(call_ids)), set_id))
            except IntegrityError as exc:
                if not isinstance(exc.orig, UniqueViolation):
                    raise
                savepoint.rollback()
                return False
            savepoint.commit()
        return True

    def add_to_set(self, set_id: int, hashes: Sequence[str], *, chunk_size: int = LOOKUP_CHUNK) -> None:
        """Add the cached embeddings of `hashes` to a set (one statement per chunk, idempotent)."""
        with translate_db_errors("recording the group's embeddings"), self.engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()
            for start in range(0, len(hashes), chunk_size):
                _add_to_set(cursor, set_id, hashes[start : start + chunk_size])

    def add_ids_to_set(self, set_id: int, ids: np.ndarray, *, chunk_size: int = ADD_CHUNK) -> None:
        """`add_to_set` by embedding id (what `lookup_chunks` returns): no second look-up of the hashes."""
        sql = ("INSERT INTO embedding_set_items (set_id, embedding_id) SELECT %s, unnest(%s::int8[]) "
               "ON CONFLICT DO NOTHING")
        with translate_db_errors("recording the group's embeddings"), self.engine.begin() as conn:
            for start in range(0, len(ids), chunk_size):
                conn.exec_driver_sql(sql, (set_id, ids[start : start + chunk_size].tolist()))

    @staticmethod
    @db_errors("storing embeddings")
    def store(conn: Connection, *batches: NewVectors) -> int:
        """Insert the vectors of `batches` inside the caller's transaction and drop their leases; returns rows added.

        Set-based whatever the number of batches: one COPY of all rows (ids reserved up front, in one query),
        one DELETE of their leases and one COPY of their set items by id. COPY straight into the table is the
        fast path (leases make us the only writer of these hashes). If a hash turned up meanwhile anyway (a
        lease taken over from a session that was slow, not dead), the COPY is undone and the rows go in
        through ON CONFLICT DO NOTHING, and the set items by hash.
        """
        cursor = conn.connection.driver_connection.cursor()
        hashes = [h for batch in batches for h in batch.request_hashes]
        if not hashes:
            return 0
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence('embedding_vectors', 'id')) FROM generate_series(1, %s)", (len(hashes),)
        )
        ids = np.fromiter((row[0] for row in cursor.fetchall()), dtype=np.int64, count=len(hashes))
        rows = []
        for batch in batches:
            norms = np.linalg.norm(batch.vectors.astype(np.float64), axis=1).tolist()
            dimension = int(batch.vectors.shape[1])
            rows += [
                (batch.provider, batch.model, dimension, t, v, n, batch.raw_call_id, batch.server, h)
                for h, t, v, n in zip(batch.request_hashes, batch.texts, batch.vectors, norms, strict=True)
            ]
        rows = [(int(i), *row) for i, row in zip(ids.tolist(), rows, strict=True)]
        savepoint = conn.begin_nested()
        try:
            _copy_rows(cursor, "embedding_vectors", rows)
            savepoint.commit()
            added, by_id = len(rows), True
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
            added, by_id = cursor.rowcount, False
        cursor.execute(f"DELETE FROM embedding_leases WHERE request_hash = ANY({HASHES})", (hash_list(hashes),))
        for set_id in dict.fromkeys(b.set_id for b in batches if b.set_id is not None):
            mine = [b.set_id == set_id for b in batches for _ in b.request_hashes]
            if by_id:
                _copy_set_items(cursor, set_id, ids[np.asarray(mine, dtype=bool)])
            else:
                _add_to_set(cursor, set_id, [h for h, m in zip(hashes, mine, strict=True) if m])
        return added
