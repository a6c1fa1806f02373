"""The embedding cache in pgvector, the leases that let processes share the work of filling it,
and nearest-neighbour search over it.

Reads and writes are set-based: one binary query per chunk of hashes, COPY for new vectors.

Search: `vector` has no fixed dimension, so each space (provider, model, server, dimension) gets its
own HNSW index on an expression of fixed dimension, partial on the space (`ensure_hnsw_index`).
pgvector's HNSW takes `vector` up to 2,000 dimensions and `halfvec` up to 4,000 (`search_method`):
up to 2,000 the index is on `(vector::vector(d))`, up to 4,000 on `(vector::halfvec(d))` (half
precision for the graph walk; distances are returned from the same expression), and beyond that a
space is searched exactly (a scan of its rows through the space's b-tree index).
The planner uses it only for a query that repeats the expression and implies the predicate, so
`nearest` builds both from `space_predicate` / `space_expression`, with the values inlined as
literals (a generic plan with parameters could not prove the partial predicate).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import functools

import numpy as np
from psycopg import sql as pgsql
from psycopg.abc import Buffer
from psycopg.adapt import Loader
from psycopg.errors import UniqueViolation
from psycopg.pq import Format
from sqlalchemy import Connection, Engine, text

from studyllm_core.db.engine import translate_db_errors
from studyllm_core.errors import NotFoundError

LOOKUP_CHUNK = 10_000


def _db_errors(action: str):  # noqa: ANN202 - a decorator
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


_HASHES = "string_to_array(%s, ',')"  # the SQL side of `_hash_list`


def _hash_list(hashes: Sequence[str]) -> str:
    """Hashes as one comma-joined text for `_HASHES`.

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
        f"SELECT %s, id FROM embedding_vectors WHERE request_hash = ANY({_HASHES}) ON CONFLICT DO NOTHING",
        (group_id, _hash_list(hashes)),
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


@dataclass(frozen=True)
class VectorSpace:
    """Vectors of one provider, model, server and dimension: what one similarity index covers.

    `server` is '' unless the server is part of the space (see `Provider.embedding_server`).
    """

    provider: str
    model: str
    dimension: int
    count: int = 0
    server: str = ""

    def label(self) -> str:
        """provider/model (d-d), with the server when there is one."""
        at = f" at {self.server}" if self.server else ""
        return f"{self.provider}/{self.model}{at} ({self.dimension}-d)"


@dataclass(frozen=True)
class StoredVector:
    """One cached embedding with its identity."""

    id: int
    request_hash: str
    text: str
    raw_call_id: int
    space: VectorSpace
    vector: np.ndarray


HNSW_EF_SEARCH = 100  # candidates kept per search (pgvector's default is 40): exact top-10 in practice
MAX_K = 1000  # pgvector's largest hnsw.ef_search: an HNSW scan returns at most that many rows
HNSW_BUILD_MEMORY = "1GB"  # maintenance_work_mem for a build: a graph that fits in memory builds many times faster


def hnsw_index_name(space: VectorSpace) -> str:
    """The index name of a space, stable and within Postgres' 63 characters whatever the model's name
    (a space without a server keeps the name indexes had before servers were part of spaces)."""
    key = f"{space.provider}\x1f{space.model}\x1f{space.dimension}" + (f"\x1f{space.server}" if space.server else "")
    return "ix_embedding_vectors_hnsw_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]


VECTOR_HNSW_MAX_DIM = 2000  # pgvector: HNSW indexes `vector` up to 2,000 dimensions ...
HALFVEC_HNSW_MAX_DIM = 4000  # ... and `halfvec` up to 4,000


def search_method(dimension: int) -> str:
    """How a space of `dimension` is searched: "vector" or "halfvec" (an HNSW index on that type), or "exact"."""
    if dimension <= VECTOR_HNSW_MAX_DIM:
        return "vector"
    if dimension <= HALFVEC_HNSW_MAX_DIM:
        return "halfvec"
    return "exact"


def space_expression(space: VectorSpace) -> str:
    """The searched expression: the column cast to the space's fixed dimension (and to halfvec above 2,000)."""
    kind = search_method(space.dimension)
    if kind == "exact":
        return "vector"
    return f"(vector::{kind}({int(space.dimension)}))"


def space_predicate(space: VectorSpace) -> str:
    """The partial-index predicate, literals inlined (queries must repeat it to use the index)."""
    provider = pgsql.Literal(space.provider).as_string()
    model = pgsql.Literal(space.model).as_string()
    server = pgsql.Literal(space.server).as_string()
    return f"provider = {provider} AND model = {model} AND dimension = {int(space.dimension)} AND server = {server}"


class VectorRepository:
    """Cache look-ups, inserts, lease bookkeeping and similarity search on `embedding_vectors`."""

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
                    f"WHERE request_hash = ANY({_HASHES}) ORDER BY dimension",
                    (_hash_list(chunk),),
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
    @_db_errors("storing embeddings")
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
        cursor.execute(f"DELETE FROM embedding_leases WHERE request_hash = ANY({_HASHES})", (_hash_list(batch.request_hashes),))
        if batch.group_id is not None:
            _add_to_group(cursor, batch.group_id, batch.request_hashes)
        return added

    # -- leases ---------------------------------------------------------------------------------

    @staticmethod
    @_db_errors("leasing texts to embed")
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
            FROM unnest({_HASHES}) AS h, me
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
        cursor.execute(sql, (_hash_list(sorted(hashes)),))
        claimed = [row[0] for row in cursor.fetchall()]
        if not claimed:
            return set()
        # The insert may have waited on a peer that committed its vectors and dropped its leases
        # meanwhile; its NOT EXISTS check ran on the older snapshot. A new statement sees the commit.
        cursor.execute(f"SELECT request_hash FROM embedding_vectors WHERE request_hash = ANY({_HASHES})", (_hash_list(claimed),))
        done = [row[0] for row in cursor.fetchall()]
        if done:
            cursor.execute(f"DELETE FROM embedding_leases WHERE request_hash = ANY({_HASHES})", (_hash_list(done),))
        return set(claimed) - set(done)

    @staticmethod
    @_db_errors("releasing leases")
    def release(conn: Connection, hashes: Sequence[str]) -> None:
        """Give up leases (after a failure) so another process may try these texts."""
        if hashes:
            cursor = conn.connection.driver_connection.cursor()
            cursor.execute(f"DELETE FROM embedding_leases WHERE request_hash = ANY({_HASHES})", (_hash_list(hashes),))

    @staticmethod
    @_db_errors("releasing leases")
    def release_all(conn: Connection) -> None:
        """Give up every lease this session holds (before its connection goes back to the pool)."""
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute("DELETE FROM embedding_leases WHERE owner_pid = pg_backend_pid()")

    # -- similarity search ----------------------------------------------------------------------

    def spaces(self) -> list[VectorSpace]:
        """Every (provider, model, dimension) with stored vectors, and how many."""
        sql = (
            "SELECT provider, model, server, dimension, count(*) FROM embedding_vectors "
            "GROUP BY provider, model, server, dimension ORDER BY provider, model, server, dimension"
        )
        with translate_db_errors("listing embedding models"), self.engine.connect() as conn:
            return [VectorSpace(p, m, int(d), int(n), server=srv) for p, m, srv, d, n in conn.execute(text(sql))]

    def hnsw_index_ready(self, space: VectorSpace) -> bool:
        """Whether the space's index exists and is valid (one catalog look-up)."""
        sql = "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = :name"
        with translate_db_errors("checking a similarity index"), self.engine.connect() as conn:
            return bool(conn.execute(text(sql), {"name": hnsw_index_name(space)}).scalar_one_or_none())

    def ensure_hnsw_index(self, space: VectorSpace, *, ddl_engine: Engine | None = None) -> tuple[str, bool]:
        """Create the space's HNSW cosine index unless it exists; returns (name, created now).

        Built CONCURRENTLY, so embedding runs keep writing meanwhile; an invalid index left by an
        interrupted build is dropped and rebuilt. Idempotent and safe to race: the loser waits.
        Creating an index needs the table's owner: `ddl_engine` (default: this repository's engine).
        """
        kind = search_method(space.dimension)
        if kind == "exact":
            raise ValueError(f"a {space.dimension}-dimensional space is searched exactly: no HNSW index takes it")
        name = hnsw_index_name(space)
        ddl = (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON embedding_vectors "
            f"USING hnsw ({space_expression(space)} {kind}_cosine_ops) WHERE {space_predicate(space)}"
        )
        state_sql = (
            "SELECT i.indisvalid, EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid) "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = :name"
        )
        with translate_db_errors(f"building the similarity index for {space.provider}/{space.model}"):
            with (ddl_engine or self.engine).connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                state = conn.execute(text(state_sql), {"name": name}).first()
                if state is not None and state[0]:
                    return name, False
                if state is not None and not state[1]:  # left invalid by a build that died
                    conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {name}"))
                conn.execute(text(f"SET maintenance_work_mem = '{HNSW_BUILD_MEMORY}'"))
                conn.execute(text(ddl))
                conn.execute(text("RESET maintenance_work_mem"))
        return name, True

    def nearest_sql(self, space: VectorSpace, k: int) -> str:
        """The top-k statement for a space (parameter: the query vector); it repeats the index's expression and predicate."""
        expr = space_expression(space)
        return (
            f"SELECT id, request_hash, text, raw_call_id, {expr} <=> %(q)s AS distance "
            f"FROM embedding_vectors WHERE {space_predicate(space)} "
            f"ORDER BY {expr} <=> %(q)s LIMIT {int(k)}"
        )

    def nearest(self, query: np.ndarray, space: VectorSpace, *, k: int = 10) -> list[tuple[int, str, str, int, float]]:
        """The k stored vectors of `space` nearest to `query` by cosine distance: (id, hash, text, call id, distance)."""
        vector = self._query_vector(query, space)
        with translate_db_errors("searching similar texts"), self.engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()
            if search_method(space.dimension) != "exact":
                cursor.execute(f"SET LOCAL hnsw.ef_search = {min(MAX_K, max(HNSW_EF_SEARCH, 2 * int(k)))}")
            cursor.execute(self.nearest_sql(space, k), {"q": vector}, binary=True)
            return [(int(i), h, t, int(c), float(d)) for i, h, t, c, d in cursor.fetchall()]

    def explain_nearest(self, query: np.ndarray, space: VectorSpace, *, k: int = 10) -> str:
        """The plan of exactly the statement `nearest` runs (to check that the index serves it)."""
        vector = self._query_vector(query, space)
        with translate_db_errors("explaining a similarity search"), self.engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()
            cursor.execute("EXPLAIN " + self.nearest_sql(space, k), {"q": vector})
            return "\n".join(row[0] for row in cursor.fetchall())

    def find(self, id_or_hash: int | str) -> StoredVector:
        """A stored vector by embedding id or request hash; NotFoundError names both ways to find one."""
        clause = "id = %(v)s" if isinstance(id_or_hash, int) or str(id_or_hash).isdigit() else "request_hash = %(v)s"
        value = int(id_or_hash) if clause.startswith("id") else str(id_or_hash)
        sql = (
            "SELECT id, request_hash, text, raw_call_id, provider, model, dimension, vector, server "
            f"FROM embedding_vectors WHERE {clause}"
        )
        with translate_db_errors("reading a stored embedding"), self.engine.connect() as conn:
            cursor = conn.connection.driver_connection.cursor()
            cursor.execute(sql, {"v": value}, binary=True)
            row = cursor.fetchone()
        if row is None:
            raise NotFoundError(
                f"no stored embedding with id or request hash {id_or_hash!r}; "
                "give an embedding id or a 64-character request hash from the cache"
            )
        i, h, t, c, p, m, d, v, srv = row
        return StoredVector(int(i), h, t, int(c), VectorSpace(p, m, int(d), server=srv), v.to_numpy())

    @staticmethod
    def _query_vector(query: np.ndarray, space: VectorSpace):  # noqa: ANN205 - a pgvector value
        """The query as the type of the space's expression (halfvec for a halfvec index, else vector)."""
        from pgvector import HalfVector, Vector

        array = np.asarray(query, dtype=np.float32).ravel()
        if array.shape[0] != space.dimension:
            raise ValueError(f"query has {array.shape[0]} dimensions, the space {space.dimension}")
        return HalfVector(array) if search_method(space.dimension) == "halfvec" else Vector(array)
