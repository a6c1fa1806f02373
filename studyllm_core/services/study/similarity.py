"""SimilarityService: the stored texts nearest to a text, a vector or a stored item, by cosine distance.

Each (provider, model, dimension) is searched through its own index (HNSW, IVFFlat when big), built on first use by
`ensure_index` (see `db/vector_search.py` for why the index is partial and on an expression). A query
text is embedded through `EmbeddingService`, so it is cached and recorded like any other call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sqlalchemy import Engine, text

from studyllm_core.db.embedding_cache import EmbeddingCache
from studyllm_core.db.vector_search import (
    MAX_K,
    SearchIndex,
    VectorSearch,
    VectorSpace,
    index_build_settings,
    index_name,
    search_method,
)
from studyllm_core.db.engine import owner_engine_of, translate_db_errors
from studyllm_core.errors import InputError, NotFoundError
from studyllm_core.providers.openai_common import normalize_server_url
from studyllm_core.providers.registry import normalize_name
from studyllm_core.services.capture.cache_key import normalize_text

if TYPE_CHECKING:  # a search by stored item (`studyllm similar --of`) never loads the embedding service
    from studyllm_core.services.capture.embedding import EmbeddingService

NEIGHBOUR_COLUMNS = ["embedding_id", "request_hash", "text", "raw_call_id", "distance", "similarity"]
QUERY_GROUP = "similarity-queries"  # embedding_batch group that query texts join, per provider and model

NoticeFn = Callable[[str], None]


class SimilarityService:
    """Nearest-neighbour search over the embedding cache."""

    def __init__(self, engine: Engine, *, notice: NoticeFn | None = None, ddl_engine: Engine | None = None) -> None:
        self.engine = engine
        # The schema owner's engine, to build indexes (default: the owner of `engine` when `open_database` made it).
        self.ddl_engine = ddl_engine if ddl_engine is not None else owner_engine_of(engine)
        self.vectors = VectorSearch(engine)
        self.cache = EmbeddingCache(engine)
        self.notice = notice  # told before a (slow, one-time) index build
        self._ready: dict[str, SearchIndex] = {}  # indexes known to be built, by name

    def ensure_index(self, provider: str, model: str, dimension: int, server: str = "") -> str | None:
        """Create the index of this space if missing (idempotent, cheap once built); returns its name,
        or None for a space searched exactly (more dimensions than any pgvector index takes)."""
        found = self._index(VectorSpace(provider, model, int(dimension), server=server))
        return found.name if found is not None else None

    def _index(self, space: VectorSpace) -> SearchIndex | None:
        """The space's index (built now when missing, its choice said), known after the first look-up."""
        if search_method(space.dimension) == "exact":
            return None
        name = index_name(space)
        found = self._ready.get(name) or self.vectors.index_ready(space)
        if found is None:
            space = self.vectors.counted(self.space(space.provider, space.model, space.dimension, server=space.server))
            build = index_build_settings(space.count, space.dimension)  # chosen by the space's size, and said
            if self.notice is not None:
                self.notice(f"building the similarity index {name} for {space.label()} ({space.count:,} vectors), once: "
                            f"{build.describe()}")
            self.vectors.ensure_index(space, ddl_engine=self.ddl_engine, build=build)
            found = self.vectors.index_ready(space)
        if found is not None:
            self._ready[name] = found
        return found

    def space(
        self, provider: str | None, model: str | None, dimension: int | None = None, *, server: str | None = None
    ) -> VectorSpace:
        """The one stored space matching what is given; InputError when several do."""
        matches = self.spaces(provider, model, dimension, server=server)
        if len(matches) > 1:
            listing = ", ".join(s.label() for s in matches)
            raise InputError(
                f"several embedding models match; choose one with --provider, --model, --dimensions or --base-url: {listing}"
            )
        return matches[0]

    def space_named(
        self, provider: str | None, model: str | None, dimension: int | None = None, *, base_url: str | None = None
    ) -> VectorSpace:
        """`space` for names as a user gives them: a provider name in any spelling, a server's URL in any form."""
        return self.space(
            normalize_name(provider) if provider else None,
            model,
            dimension,
            server=normalize_server_url(base_url) if base_url else None,
        )

    def spaces(
        self, provider: str | None, model: str | None, dimension: int | None = None, *, server: str | None = None
    ) -> list[VectorSpace]:
        """Stored spaces matching what is given (None: any), uncounted; NotFoundError lists what is stored (counted) when none match."""
        stored = self.vectors.spaces(counted=False)  # a search needs the space, not its size
        if not stored:
            raise NotFoundError("there are no stored embeddings yet; embed texts first with `studyllm embed`")
        matches = [
            s for s in stored
            if (provider is None or s.provider == provider) and (model is None or s.model == model)
            and (dimension is None or s.dimension == dimension) and (server is None or s.server == server)
        ]
        if not matches:
            listing = ", ".join(f"{s.label()[:-1]}, {s.count:,} vectors)" for s in map(self.vectors.counted, stored))
            wanted = f"{provider or '*'}/{model or '*'}" + (f" at {server}" if server else "") + (
                f" ({dimension}-d)" if dimension else "")
            raise NotFoundError(f"no stored embeddings for {wanted}; stored are: {listing}")
        return matches

    def search_vector(self, vector: np.ndarray, provider: str, model: str, *, k: int = 10, server: str = "") -> pd.DataFrame:
        """The k stored texts of this provider/model (and server) nearest to `vector`, nearest first."""
        _check_k(k)
        space = VectorSpace(provider, model, int(np.asarray(vector).size), server=server)
        return _frame(self.vectors.nearest(vector, space, k=k, index=self._index(space)))

    def search_text(self, query: str, embedder: EmbeddingService, *, k: int = 10) -> pd.DataFrame:
        """Embed `query` with `embedder` (cached, recorded) and return the k nearest stored texts.

        The query's own cache entry is left out unless the text was also embedded outside
        similarity queries (then it is a stored text like any other, at distance 0).
        """
        _check_k(k)
        # Fail before any API call when nothing is stored for the model; an indexed LIMIT 1 look-up,
        # the full listing (a scan) only to word the error.
        known = self.cache.known_dimension(embedder.provider_name, embedder.model, embedder.server)
        if known is None or embedder.dimensions not in (None, known):
            self.spaces(embedder.provider_name, embedder.model, embedder.dimensions, server=embedder.server)
        group = f"{QUERY_GROUP}:{embedder.provider_name}:{embedder.model}"
        outcome = embedder.embed([query], group_name=group)
        if outcome.failures:
            raise InputError(f"the query text could not be embedded: {outcome.failures[0]}")
        found = self.search_vector(
            outcome.vectors[0], embedder.provider_name, embedder.model, k=min(k + 1, MAX_K), server=embedder.server
        )
        own = embedder.request_hash(normalize_text(query))
        if not self._stored_outside_queries(own):
            found = found[found["request_hash"] != own]
        return found.head(k).reset_index(drop=True)

    async def asearch_text(self, query: str, embedder: EmbeddingService, *, k: int = 10) -> pd.DataFrame:
        """`search_text` for async code (a notebook's `await`): runs in a worker thread, the event loop stays free."""
        return await asyncio.to_thread(self.search_text, query, embedder, k=k)

    def neighbours_of(self, id_or_hash: int | str, *, k: int = 10) -> pd.DataFrame:
        """The k stored texts nearest to a stored one (by embedding id or request hash), itself excluded."""
        _check_k(k)
        item = self.vectors.find(id_or_hash)
        found = self.vectors.nearest(item.vector, item.space, k=min(k + 1, MAX_K), index=self._index(item.space))
        return _frame([row for row in found if row[0] != item.id][:k])


    def _stored_outside_queries(self, request_hash: str) -> bool:
        """Whether the call that produced this cache entry belongs to a group other than the query groups."""
        sql = text(
            "SELECT EXISTS (SELECT 1 FROM embedding_vectors v JOIN group_members m ON m.call_id = v.raw_call_id "
            "JOIN groups g ON g.id = m.group_id WHERE v.request_hash = :h AND g.name NOT LIKE :queries)"
        )
        with translate_db_errors("checking a query's provenance"), self.engine.connect() as conn:
            return bool(conn.execute(sql, {"h": request_hash, "queries": f"{QUERY_GROUP}:%"}).scalar_one())


def _check_k(k: int) -> None:
    if not 1 <= k <= MAX_K:
        raise InputError(f"k must be between 1 and {MAX_K}, not {k}")


def _frame(rows: list[tuple[int, str, str, int, float]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=NEIGHBOUR_COLUMNS[:-1])
    frame["similarity"] = 1.0 - frame["distance"]
    return frame
