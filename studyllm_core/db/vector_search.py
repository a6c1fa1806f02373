"""Nearest-neighbour search over the embedding cache, one HNSW index per vector space.

`vector` has no fixed dimension, so each space (provider, model, server, dimension) gets its
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
