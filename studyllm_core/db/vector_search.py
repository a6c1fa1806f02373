"""Nearest-neighbour search over the embedding cache, one HNSW index per vector space.

`vector` has no fixed dimension, so each space (provider, model, server, dimension) gets its
own HNSW index on an expression of fixed dimension, partial on the space (`ensure_hnsw_index`).
The index is on `(vector::halfvec(d))` up to 4,000 dimensions (pgvector's limit for `halfvec`;
`search_method`): half precision halves the graph (a million 384-d vectors: about 1 GB instead of
2) and its build, and each search walks the graph for more candidates than asked (`rerank_pool`)
and re-ranks them by the exact float32 distance, so distances and their order are exact among the
candidates. Beyond 4,000 dimensions a space is searched exactly (a scan of its rows through the
space's b-tree index). The build's memory and parallel workers are chosen by the space's size
(`hnsw_build_settings`).
The planner uses it only for a query that repeats the expression and implies the predicate, so
`nearest` builds both from `space_predicate` / `space_expression`, with the values inlined as
literals (a generic plan with parameters could not prove the partial predicate).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import numpy as np
from psycopg import sql as pgsql
from sqlalchemy import Engine, text

from studyllm_core.db.engine import translate_db_errors
from studyllm_core.errors import NotFoundError


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


HNSW_EF_SEARCH = 100  # candidates kept per search (pgvector's default is 40)
MAX_K = 1000  # pgvector's largest hnsw.ef_search: an HNSW scan returns at most that many rows
HNSW_M, HNSW_EF_CONSTRUCTION = 16, 64  # pgvector's defaults, spelled out in the index definition
RERANK_FACTOR, RERANK_MIN = 4, 40  # candidates re-ranked by the exact distance: k x 4, at least 40
BUILD_MEMORY_MIN_MB, BUILD_MEMORY_MAX_MB = 64, 4096  # maintenance_work_mem bounds for a build
PARALLEL_BUILD_MIN_ROWS = 100_000  # below this a build is quick; above it, parallel workers help


@dataclass(frozen=True)
class HnswBuild:
    """How an HNSW index is built: maintenance_work_mem (MB) and parallel maintenance workers."""

    memory_mb: int
    workers: int

    def describe(self) -> str:
        return (f"halfvec HNSW (m {HNSW_M}, ef_construction {HNSW_EF_CONSTRUCTION}), maintenance_work_mem "
                f"{self.memory_mb} MB, {self.workers} parallel worker{'s' if self.workers != 1 else ''}")


def hnsw_build_settings(count: int, dimension: int, *, cpus: int | None = None, memory_bytes: int | None = None) -> HnswBuild:
    """Build settings chosen by the space's size: memory for the whole graph when the machine has it (a
    graph that fits builds several times faster than one spilled to disk), and parallel workers
    (one fewer than the CPUs, at most 7) above PARALLEL_BUILD_MIN_ROWS vectors.

    The graph needs about 2 bytes per dimension (halfvec) plus 2 x m neighbour links and tuple
    overhead per vector; memory is capped at a quarter of the machine's and at BUILD_MEMORY_MAX_MB.
    """
    graph = count * (2 * dimension + 2 * HNSW_M * 8 + 120)
    total = memory_bytes if memory_bytes is not None else _machine_memory()
    cap = min(BUILD_MEMORY_MAX_MB, max(BUILD_MEMORY_MIN_MB, total // 4 // 2**20))
    memory_mb = int(min(cap, max(BUILD_MEMORY_MIN_MB, -(-graph * 5 // 4 // 2**20))))
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    workers = min(7, max(cpus - 1, 0)) if count >= PARALLEL_BUILD_MIN_ROWS else 0
    return HnswBuild(memory_mb, workers)


def _machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def rerank_pool(k: int) -> int:
    """How many candidates the index returns for a top-k search (re-ranked by the exact distance)."""
    return min(MAX_K, max(RERANK_MIN, RERANK_FACTOR * int(k)))


def hnsw_index_name(space: VectorSpace) -> str:
    """The index name of a space, stable and within Postgres' 63 characters whatever the model's name
    (a space without a server keeps the name indexes had before servers were part of spaces; up to
    2,000 dimensions the name says halfvec, as those indexes were on `vector` before)."""
    key = _legacy_key(space) + ("\x1fhalfvec" if space.dimension <= VECTOR_HNSW_MAX_DIM else "")
    return "ix_embedding_vectors_hnsw_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]


def legacy_hnsw_index_name(space: VectorSpace) -> str | None:
    """The name of the `vector` index a space of up to 2,000 dimensions had before halfvec (None above)."""
    if space.dimension > VECTOR_HNSW_MAX_DIM:
        return None
    return "ix_embedding_vectors_hnsw_" + hashlib.sha256(_legacy_key(space).encode("utf-8")).hexdigest()[:20]


def _legacy_key(space: VectorSpace) -> str:
    return f"{space.provider}\x1f{space.model}\x1f{space.dimension}" + (f"\x1f{space.server}" if space.server else "")


VECTOR_HNSW_MAX_DIM = 2000  # pgvector: HNSW indexes `vector` up to 2,000 dimensions ...
HALFVEC_HNSW_MAX_DIM = 4000  # ... and `halfvec` up to 4,000


def search_method(dimension: int) -> str:
    """How a space of `dimension` is searched: "halfvec" (an HNSW index on the halfvec cast) or "exact"."""
    return "halfvec" if dimension <= HALFVEC_HNSW_MAX_DIM else "exact"


def space_expression(space: VectorSpace) -> str:
    """The indexed expression: the column cast to halfvec of the space's fixed dimension (the column itself when exact)."""
    if search_method(space.dimension) == "exact":
        return "vector"
    return f"(vector::halfvec({int(space.dimension)}))"


def space_predicate(space: VectorSpace) -> str:
    """The partial-index predicate, literals inlined (queries must repeat it to use the index)."""
    provider = pgsql.Literal(space.provider).as_string()
    model = pgsql.Literal(space.model).as_string()
    server = pgsql.Literal(space.server).as_string()
    return f"provider = {provider} AND model = {model} AND dimension = {int(space.dimension)} AND server = {server}"


class VectorSearch:
    """The stored spaces, their HNSW indexes and similarity search on `embedding_vectors`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

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

    def ensure_hnsw_index(
        self, space: VectorSpace, *, ddl_engine: Engine | None = None, build: HnswBuild | None = None
    ) -> tuple[str, bool]:
        """Create the space's HNSW cosine index unless it exists; returns (name, created now).

        Built CONCURRENTLY, so embedding runs keep writing meanwhile; an invalid index left by an
        interrupted build is dropped and rebuilt. Idempotent and safe to race: the loser waits.
        `build` sets its memory and parallel workers (default: `hnsw_build_settings` for the space's
        count). The space's `vector` index from before halfvec, if any, is dropped once this one is built.
        Creating an index needs the table's owner: `ddl_engine` (default: this repository's engine).
        """
        if search_method(space.dimension) == "exact":
            raise ValueError(f"a {space.dimension}-dimensional space is searched exactly: no HNSW index takes it")
        build = build or hnsw_build_settings(space.count, space.dimension)
        name = hnsw_index_name(space)
        ddl = (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON embedding_vectors "
            f"USING hnsw ({space_expression(space)} halfvec_cosine_ops) "
            f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) WHERE {space_predicate(space)}"
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
                conn.execute(text(f"SET maintenance_work_mem = '{int(build.memory_mb)}MB'"))
                conn.execute(text(f"SET max_parallel_maintenance_workers = {int(build.workers)}"))
                try:
                    conn.execute(text(ddl))
                finally:
                    conn.execute(text("RESET maintenance_work_mem"))
                    conn.execute(text("RESET max_parallel_maintenance_workers"))
                legacy = legacy_hnsw_index_name(space)
                if legacy is not None:
                    conn.execute(text(f"DROP INDEX CONCURRENTLY IF EXISTS {legacy}"))
        return name, True

    def nearest_sql(self, space: VectorSpace, k: int) -> str:
        """The top-k statement for a space (parameters: the query as `q`, and as halfvec `qh` for the index).

        The inner query repeats the index's expression and predicate and takes `rerank_pool(k)` candidates
        from the graph; the outer one orders them by the exact distance of the stored float32 vectors.
        """
        if search_method(space.dimension) == "exact":
            return (
                "SELECT id, request_hash, text, raw_call_id, vector <=> %(q)s AS distance "
                f"FROM embedding_vectors WHERE {space_predicate(space)} ORDER BY vector <=> %(q)s LIMIT {int(k)}"
            )
        expr = space_expression(space)
        return (
            "SELECT id, request_hash, text, raw_call_id, vector <=> %(q)s AS distance FROM ("
            f"SELECT id, request_hash, text, raw_call_id, vector FROM embedding_vectors WHERE {space_predicate(space)} "
            f"ORDER BY {expr} <=> %(qh)s LIMIT {rerank_pool(k)}) AS candidates "
            f"ORDER BY distance LIMIT {int(k)}"
        )

    def nearest(self, query: np.ndarray, space: VectorSpace, *, k: int = 10) -> list[tuple[int, str, str, int, float]]:
        """The k stored vectors of `space` nearest to `query` by cosine distance: (id, hash, text, call id, distance)."""
        params = self._query_params(query, space)
        with translate_db_errors("searching similar texts"), self.engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()
            if search_method(space.dimension) != "exact":
                cursor.execute(f"SET LOCAL hnsw.ef_search = {min(MAX_K, max(HNSW_EF_SEARCH, rerank_pool(k)))}")
            cursor.execute(self.nearest_sql(space, k), params, binary=True)
            return [(int(i), h, t, int(c), float(d)) for i, h, t, c, d in cursor.fetchall()]

    def explain_nearest(self, query: np.ndarray, space: VectorSpace, *, k: int = 10) -> str:
        """The plan of exactly the statement `nearest` runs (to check that the index serves it)."""
        params = self._query_params(query, space)
        with translate_db_errors("explaining a similarity search"), self.engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()
            cursor.execute("EXPLAIN " + self.nearest_sql(space, k), params)
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
    def _query_params(query: np.ndarray, space: VectorSpace) -> dict:
        """The query as `vector` (q, for exact distances) and as `halfvec` (qh, for the index's expression)."""
        from pgvector import HalfVector, Vector

        array = np.asarray(query, dtype=np.float32).ravel()
        if array.shape[0] != space.dimension:
            raise ValueError(f"query has {array.shape[0]} dimensions, the space {space.dimension}")
        params = {"q": Vector(array)}
        if search_method(space.dimension) == "halfvec":
            params["qh"] = HalfVector(array)
        return params
