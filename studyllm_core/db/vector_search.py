"""Nearest-neighbour search over the embedding cache, one index per vector space (HNSW, or IVFFlat when big).

`vector` has no fixed dimension, so each space (provider, model, server, dimension) gets its
own index on an expression of fixed dimension, partial on the space (`ensure_index`).
The index is on `(vector::halfvec(d))` up to 4,000 dimensions (pgvector's limit for `halfvec`;
`search_method`): half precision halves the index (a million 384-d vectors: about 1 GB instead of
2) and its build, and each search takes more candidates from the index than asked (`rerank_pool`)
and re-ranks them by the exact float32 distance, so distances and their order are exact among the
candidates. Beyond 4,000 dimensions a space is searched exactly (a scan of its rows through the
space's b-tree index). The index method (HNSW up to IVFFLAT_MIN_ROWS vectors, IVFFlat from there),
its build memory and parallel workers are chosen by the space's size when it is built
(`index_build_settings`).
The planner uses it only for a query that repeats the expression and implies the predicate, so
`nearest` builds both from `space_predicate` / `space_expression`, with the values inlined as
literals (a generic plan with parameters could not prove the partial predicate).
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, replace

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
# From this many vectors a space gets an IVFFlat index instead of HNSW. Measured on 200,000 clustered 384-d
# vectors (1,000 blobs) on 2 shared cores: HNSW (m 16, ef_construction 64) built in 106 s and found recall@10
# 0.96 in 3.3 ms (ef_search 100); IVFFlat (447 lists) built in 12 s and found 0.999 in 5.9 ms (10 probes).
# An HNSW build inserts each vector by a graph search, so a million takes the better part of an hour there;
# IVFFlat clusters a sample into lists and files each vector under its nearest list. Below this, HNSW:
# it keeps its quality as a space grows, and small spaces build in seconds either way.
IVFFLAT_MIN_ROWS = 100_000
IVFFLAT_PROBE_SHARE, IVFFLAT_MIN_PROBES = 0.01, 10  # lists one IVFFlat search scans: 1%, at least 10


@dataclass(frozen=True)
class IndexBuild:
    """How a space's index is built: its method ("hnsw" or "ivfflat"), lists (IVFFlat), maintenance_work_mem
    (MB) and parallel maintenance workers."""

    memory_mb: int
    workers: int
    method: str = "hnsw"
    lists: int = 0

    def options(self) -> str:
        """The index's WITH options."""
        if self.method == "ivfflat":
            return f"lists = {int(self.lists)}"
        return f"m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}"

    def describe(self) -> str:
        what = (f"halfvec IVFFlat ({self.lists:,} lists, {ivfflat_probes(self.lists)} probed per search)"
                if self.method == "ivfflat" else f"halfvec HNSW (m {HNSW_M}, ef_construction {HNSW_EF_CONSTRUCTION})")
        return (f"{what}, maintenance_work_mem {self.memory_mb} MB, "
                f"{self.workers} parallel worker{'s' if self.workers != 1 else ''}")


@dataclass(frozen=True)
class SearchIndex:
    """A space's built index as the catalog tells it: its name, method and (IVFFlat) lists."""

    name: str
    method: str
    lists: int = 0


def index_build_settings(count: int, dimension: int, *, cpus: int | None = None, memory_bytes: int | None = None) -> IndexBuild:
    """The index a space of `count` vectors gets, and its build settings: HNSW below IVFFLAT_MIN_ROWS,
    IVFFlat with sqrt(count) lists from there; memory for the whole HNSW graph (or the IVFFlat sample)
    when the machine has it (a graph that fits builds several times faster than one spilled to disk),
    and parallel workers (one fewer than the CPUs, at most 7) above PARALLEL_BUILD_MIN_ROWS vectors.

    The graph needs about 2 bytes per dimension (halfvec) plus 2 x m neighbour links and tuple overhead
    per vector; IVFFlat's k-means holds 50 sampled vectors per list and a bound per sample and list
    (4 x 50 x lists^2 bytes: 200 MB at 1,000 lists). Memory is capped at a quarter of the machine's and
    at BUILD_MEMORY_MAX_MB.
    """
    cpus = cpus if cpus is not None else (os.cpu_count() or 1)
    workers = min(7, max(cpus - 1, 0)) if count >= PARALLEL_BUILD_MIN_ROWS else 0
    total = memory_bytes if memory_bytes is not None else _machine_memory()
    cap = min(BUILD_MEMORY_MAX_MB, max(BUILD_MEMORY_MIN_MB, total // 4 // 2**20))
    if count >= IVFFLAT_MIN_ROWS:
        lists = max(1, round(math.sqrt(count)))
        # pgvector's k-means on 50 samples per list: a float bound per sample and list, the centres' distances,
        # the samples and centres themselves (its error at 1,000 lists of 384-d: "memory required is 235 MB")
        need = 4 * 51 * lists**2 + lists * 52 * (4 * dimension + 16)
        method = "ivfflat"
    else:
        lists, need, method = 0, count * (2 * dimension + 2 * HNSW_M * 8 + 120), "hnsw"
    memory_mb = int(min(cap, max(BUILD_MEMORY_MIN_MB, -(-need * 5 // 4 // 2**20))))
    return IndexBuild(memory_mb, workers, method, lists)


def ivfflat_probes(lists: int) -> int:
    """How many of an IVFFlat index's lists one search scans (IVFFLAT_PROBE_SHARE of them, at least IVFFLAT_MIN_PROBES)."""
    return max(1, min(int(lists), max(IVFFLAT_MIN_PROBES, math.ceil(lists * IVFFLAT_PROBE_SHARE))))


def _machine_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 * 2**30


def rerank_pool(k: int) -> int:
    """How many candidates the index returns for a top-k search (re-ranked by the exact distance)."""
    return min(MAX_K, max(RERANK_MIN, RERANK_FACTOR * int(k)))


def index_name(space: VectorSpace) -> str:
    """The index name of a space, stable and within Postgres' 63 characters whatever the model's name
    (a space without a server keeps the name indexes had before servers were part of spaces; up to
    2,000 dimensions the name says halfvec, as those indexes were on `vector` before). The name says
    hnsw, from when every index was: an IVFFlat index of a big space has the same name."""
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


SPACE_COLUMNS = ("provider", "model", "dimension", "server")  # a vector space's columns, in predicate order


def space_predicate(space: VectorSpace) -> str:
    """The partial-index predicate, literals inlined (queries must repeat it to use the index)."""
    values = {"provider": pgsql.Literal(space.provider).as_string(), "model": pgsql.Literal(space.model).as_string(),
              "dimension": str(int(space.dimension)), "server": pgsql.Literal(space.server).as_string()}
    return " AND ".join(f"{column} = {values[column]}" for column in SPACE_COLUMNS)


class VectorSearch:
    """The stored spaces, their indexes (HNSW or IVFFlat) and similarity search on `embedding_vectors`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def spaces(self, *, counted: bool = True) -> list[VectorSpace]:
        """Every (provider, model, server, dimension) with stored vectors, and how many (0 unless `counted`).

        The spaces come from a skip scan of the space's b-tree (one index probe per space, whatever N);
        counting reads every row's index entry, so a search that only needs to know the space skips it."""
        columns = "provider, model, server, dimension"
        sql = (
            f"WITH RECURSIVE s AS ((SELECT {columns} FROM embedding_vectors ORDER BY {columns} LIMIT 1) "
            f"UNION ALL SELECT n.* FROM s, LATERAL (SELECT {columns} FROM embedding_vectors e "
            f"WHERE (e.provider, e.model, e.server, e.dimension) > (s.provider, s.model, s.server, s.dimension) "
            f"ORDER BY {columns} LIMIT 1) n) SELECT {columns} FROM s"
        )
        with translate_db_errors("listing embedding models"), self.engine.connect() as conn:
            found = [VectorSpace(p, m, int(d), server=srv) for p, m, srv, d in conn.execute(text(sql))]
        return [self.counted(space) for space in found] if counted else found

    def counted(self, space: VectorSpace) -> VectorSpace:
        """The space with its number of stored vectors (an index-only count of its rows)."""
        sql = f"SELECT count(*) FROM embedding_vectors WHERE {space_predicate(space)}"
        with translate_db_errors("counting stored embeddings"), self.engine.connect() as conn:
            return replace(space, count=int(conn.execute(text(sql)).scalar_one()))

    def index_ready(self, space: VectorSpace) -> SearchIndex | None:
        """The space's index when it exists and is valid, with its method and lists (one catalog look-up)."""
        sql = (
            "SELECT am.amname, c.reloptions FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_am am ON am.oid = c.relam WHERE c.relname = :name AND i.indisvalid"
        )
        name = index_name(space)
        with translate_db_errors("checking a similarity index"), self.engine.connect() as conn:
            found = conn.execute(text(sql), {"name": name}).first()
        if found is None:
            return None
        options = dict(option.split("=", 1) for option in (found[1] or []))
        return SearchIndex(name, str(found[0]), int(options.get("lists", 0)))

    def ensure_index(
        self, space: VectorSpace, *, ddl_engine: Engine | None = None, build: IndexBuild | None = None
    ) -> tuple[str, bool]:
        """Create the space's cosine index unless it exists; returns (name, created now).

        Built CONCURRENTLY, so embedding runs keep writing meanwhile; an invalid index left by an
        interrupted build is dropped and rebuilt. Idempotent and safe to race: the loser waits.
        `build` sets its method, memory and parallel workers (default: `index_build_settings` for the
        space's count). The space's `vector` index from before halfvec, if any, is dropped once this one
        is built. Creating an index needs the table's owner: `ddl_engine` (default: this repository's engine).
        """
        if search_method(space.dimension) == "exact":
            raise ValueError(f"a {space.dimension}-dimensional space is searched exactly: no index takes it")
        build = build or index_build_settings(space.count, space.dimension)
        name = index_name(space)
        ddl = (
            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON embedding_vectors "
            f"USING {build.method} ({space_expression(space)} halfvec_cosine_ops) "
            f"WITH ({build.options()}) WHERE {space_predicate(space)}"
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
                # The planner's statistics of the space columns: a space embedded since the last ANALYZE is
                # estimated at one row, and for one row the space's b-tree and a sort of every vector look
                # cheaper than an IVFFlat scan (459-544 ms a query at 200,000 vectors instead of 5-8 ms) until
                # autovacuum gets to the table. ANALYZE reads a fixed sample (0.2-0.4 s at 300,000-750,000 rows).
                conn.execute(text(f"ANALYZE embedding_vectors ({', '.join(SPACE_COLUMNS)})"))
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

    def nearest(
        self, query: np.ndarray, space: VectorSpace, *, k: int = 10, index: SearchIndex | None = None
    ) -> list[tuple[int, str, str, int, float]]:
        """The k stored vectors of `space` nearest to `query` by cosine distance: (id, hash, text, call id, distance).

        `index` (from `index_ready`) says how far the index searches: HNSW keeps at least the re-rank pool,
        IVFFlat scans `ivfflat_probes(lists)` lists; without it the HNSW setting is used."""
        params = self._query_params(query, space)
        with translate_db_errors("searching similar texts"), self.engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()
            if search_method(space.dimension) != "exact":
                cursor.execute(self.search_settings(k, index))
            cursor.execute(self.nearest_sql(space, k), params, binary=True)
            return [(int(i), h, t, int(c), float(d)) for i, h, t, c, d in cursor.fetchall()]

    @staticmethod
    def search_settings(k: int, index: SearchIndex | None) -> str:
        """The SET LOCAL statement that sizes one search by the index's method."""
        if index is not None and index.method == "ivfflat":
            return f"SET LOCAL ivfflat.probes = {ivfflat_probes(index.lists)}"
        return f"SET LOCAL hnsw.ef_search = {min(MAX_K, max(HNSW_EF_SEARCH, rerank_pool(k)))}"

    def explain_nearest(self, query: np.ndarray, space: VectorSpace, *, k: int = 10, index: SearchIndex | None = None) -> str:
        """The plan of exactly the statement `nearest` runs (to check that the index serves it)."""
        params = self._query_params(query, space)
        with translate_db_errors("explaining a similarity search"), self.engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()
            if search_method(space.dimension) != "exact":
                cursor.execute(self.search_settings(k, index))
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
