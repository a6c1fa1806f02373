"""SimilarityService: true nearest neighbours (checked by brute force), through the per-space index (HNSW, or IVFFlat from 100,000 vectors)."""

import numpy as np
import pytest
from sqlalchemy import event, text

from studyllm_core.db.calls import NewCall, RawCallRepository
from studyllm_core.db.embedding_cache import EmbeddingCache, NewVectors
from studyllm_core.db import vector_search
from studyllm_core.db.vector_search import (
    IndexBuild,
    VectorSearch,
    VectorSpace,
    index_build_settings,
    index_name,
    ivfflat_probes,
    legacy_hnsw_index_name,
)
from studyllm_core.errors import InputError, NotFoundError
from studyllm_core.providers.registry import create_provider
from studyllm_core.services.capture import embedding as embedding_module
from studyllm_core.services.capture.embedding import EmbeddingService
from studyllm_core.services.study.similarity import SimilarityService
from support import TEST_API_KEY, Statements


def store(engine, vectors: np.ndarray, provider: str = "p", model: str = "m", prefix: str = "h") -> list[str]:
    """Store `vectors` as produced by one embedding call; returns their request hashes (row order)."""
    call_id = RawCallRepository(engine).insert(
        NewCall(provider=provider, model=model, modality="embedding", status="success", request_json={})
    )
    hashes = [f"{prefix}{i:08d}" for i in range(len(vectors))]
    with engine.begin() as conn:
        EmbeddingCache.store(conn, NewVectors(hashes, [f"text {prefix}{i}" for i in range(len(vectors))],
                                                np.ascontiguousarray(vectors, dtype=np.float32), provider, model, call_id))
    return hashes


def brute_force(data: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    distance = 1.0 - unit @ (query / np.linalg.norm(query))
    order = np.argsort(distance, kind="stable")[:k]
    return order, distance[order]


def test_search_returns_the_true_nearest_neighbours_of_its_own_model_only(engine):
    rng = np.random.default_rng(3)
    data = rng.normal(size=(2_000, 16)).astype(np.float32)
    hashes = store(engine, data)
    store(engine, rng.normal(size=(300, 16)), model="other", prefix="o")  # same dimension, another model
    store(engine, rng.normal(size=(300, 8)), prefix="d")  # same model, another dimension
    service = SimilarityService(engine)
    for q in range(5):
        query = rng.normal(size=16).astype(np.float32)
        found = service.search_vector(query, "p", "m", k=10)
        order, distance = brute_force(data, query, 10)
        assert list(found["request_hash"]) == [hashes[i] for i in order]
        np.testing.assert_allclose(found["distance"], distance, atol=1e-5)
        np.testing.assert_allclose(found["similarity"], 1 - distance, atol=1e-5)
    assert VectorSearch(engine).index_ready(VectorSpace("p", "m", 16))
    assert not VectorSearch(engine).index_ready(VectorSpace("p", "m", 8))


def test_neighbours_of_a_stored_item_by_id_or_hash_exclude_the_item(engine):
    rng = np.random.default_rng(4)
    data = rng.normal(size=(500, 12)).astype(np.float32)
    hashes = store(engine, data)
    service = SimilarityService(engine)
    order, _ = brute_force(data, data[42], 6)
    want = [hashes[i] for i in order if i != 42][:5]
    by_hash = service.neighbours_of(hashes[42], k=5)
    assert list(by_hash["request_hash"]) == want
    item_id = VectorSearch(engine).find(hashes[42]).id
    assert list(service.neighbours_of(item_id, k=5)["request_hash"]) == want
    with pytest.raises(NotFoundError, match="no stored embedding with id or request hash"):
        service.neighbours_of("f" * 64)


def test_spaces_are_listed_by_a_skip_scan_with_counts_on_demand(engine):
    """Every stored (provider, model, server, dimension), in order; counted only when asked."""
    rng = np.random.default_rng(4)
    store(engine, rng.normal(size=(30, 4)))
    store(engine, rng.normal(size=(20, 8)), prefix="d")
    store(engine, rng.normal(size=(10, 4)), provider="a", model="z", prefix="a")
    store(engine, rng.normal(size=(5, 4)), model="m2", prefix="b")
    search = VectorSearch(engine)
    expected = [("a", "z", 4, 10), ("p", "m", 4, 30), ("p", "m", 8, 20), ("p", "m2", 4, 5)]
    assert [(s.provider, s.model, s.dimension, s.count) for s in search.spaces()] == expected
    assert [(s.provider, s.model, s.dimension, s.count) for s in search.spaces(counted=False)] == [e[:3] + (0,) for e in expected]


def test_ensure_index_is_idempotent_and_named_by_a_hash(engine):
    store(engine, np.random.default_rng(5).normal(size=(50, 4)), provider="local", model="all-MiniLM-L6-v2 'quoted'")
    service = SimilarityService(engine)
    name = service.ensure_index("local", "all-MiniLM-L6-v2 'quoted'", 4)
    assert name == index_name(VectorSpace("local", "all-MiniLM-L6-v2 'quoted'", 4)) and len(name) < 63
    assert SimilarityService(engine).ensure_index("local", "all-MiniLM-L6-v2 'quoted'", 4) == name
    with engine.connect() as conn:
        defs = list(conn.execute(text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"), {"n": name}).scalars())
    assert len(defs) == 1 and "hnsw" in defs[0] and "halfvec_cosine_ops" in defs[0] and "(vector)::halfvec(4)" in defs[0]


def test_missing_data_and_bad_arguments_are_clear(engine):
    service = SimilarityService(engine)
    with pytest.raises(NotFoundError, match="no stored embeddings yet; embed texts first"):
        service.search_vector(np.ones(4), "p", "m")
    store(engine, np.ones((3, 4)))
    with pytest.raises(NotFoundError, match=r"no stored embeddings for p/m \(5-d\); stored are: p/m \(4-d, 3 vectors\)"):
        service.search_vector(np.ones(5), "p", "m")
    with pytest.raises(InputError, match="k must be between 1 and 1000"):
        service.search_vector(np.ones(4), "p", "m", k=0)


def test_search_text_embeds_the_query_through_the_cache(engine, stub):
    embedding_module._validated_models.clear()
    provider = create_provider("openai-compatible", base_url=stub.base_url, api_key=TEST_API_KEY, timeout=5.0)
    embedder = EmbeddingService(engine, provider, provider_name="openai-compatible", model="stub-embedding")
    corpus = [f"document number {i}" for i in range(200)]
    embedder.embed(corpus, group_name="corpus")
    service = SimilarityService(engine)
    found = service.search_text("document number 17", embedder, k=3)
    assert found["text"].iloc[0] == "document number 17" and found["distance"].iloc[0] == pytest.approx(0, abs=1e-5)
    requests = stub.stats.requests_total
    service.search_text("document number 17", embedder, k=3)  # cached: no API call
    assert stub.stats.requests_total == requests
    data = np.array([stub.embedding(t) for t in corpus])
    order, _ = brute_force(data, np.array(stub.embedding("a new question")), 10)
    for _ in range(2):  # the query is cached by the first search, yet never its own result
        assert list(service.search_text("a new question", embedder, k=10)["text"]) == [corpus[i] for i in order]
    assert RawCallRepository(engine).count() == 2  # the corpus batch and the one new query text


@pytest.mark.slow  # about 18 s, most of it building the index (IVFFlat at 100,000)
def test_explain_uses_the_index_at_100k_vectors(engine):
    """The planner picks the partial expression index for the exact statement `nearest` runs, right after the
    space was embedded: the table's statistics predate the space (autovacuum has not analyzed it yet), which
    made the planner expect one row and sort the whole space by distance instead (459-544 ms a query at
    200,000 vectors) until the index build analyzed the space columns."""
    rng = np.random.default_rng(6)
    dim = 8  # small vectors keep the build quick; the plan does not depend on the dimension
    store(engine, rng.normal(size=(2_000, dim)), provider="openai", model="text-embedding-3-small", prefix="x")
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("ANALYZE embedding_vectors"))  # statistics from before the space below
    data = rng.normal(size=(100_000, dim)).astype(np.float32)
    store(engine, data, provider="local", model="all-MiniLM-L6-v2")
    service = SimilarityService(engine)
    name = service.ensure_index("local", "all-MiniLM-L6-v2", dim)
    space = VectorSpace("local", "all-MiniLM-L6-v2", dim)
    query = rng.normal(size=dim).astype(np.float32)
    plan = service.vectors.explain_nearest(query, space, k=10)
    assert f"Index Scan using {name}" in plan, plan
    # IVFFlat is approximate: a query near the border of the lists it probes can miss 2 of its 10 (1-4% of queries
    # here, depending on the lists the build's random sample made), so recall@10 is averaged over 50 queries (0.98
    # over 200 queries in each of three builds; a query's worst was 0.8).
    found = 0
    for query in rng.normal(size=(50, dim)).astype(np.float32):
        order, _ = brute_force(data, query, 10)
        hashes = service.search_vector(query, "local", "all-MiniLM-L6-v2", k=10)["request_hash"]
        found += len(set(hashes) & {f"h{i:08d}" for i in order})
    assert found / (50 * 10) >= 0.95, found / 500


@pytest.mark.parametrize("dimension, method", [(3_072, "halfvec"), (4_100, "exact")])
def test_models_over_2000_dimensions_are_searched(engine, dimension, method):
    """text-embedding-3-large has 3,072 dimensions: past pgvector's 2,000 for a `vector` HNSW index. It gets a
    `halfvec` HNSW index (up to 4,000 dimensions); larger spaces are searched exactly."""
    rng = np.random.default_rng(7)
    data = rng.normal(size=(300, dimension)).astype(np.float32)
    hashes = store(engine, data, model="big")
    service = SimilarityService(engine)
    space = VectorSpace("p", "big", dimension)
    for q in range(3):
        query = data[q * 10] + rng.normal(scale=0.5, size=dimension).astype(np.float32)
        found = service.search_vector(query, "p", "big", k=5)
        order, distance = brute_force(data, query, 5)
        assert list(found["request_hash"])[:3] == [hashes[i] for i in order[:3]]
        np.testing.assert_allclose(found["distance"], distance, atol=2e-3 if method == "halfvec" else 1e-5)
    repo = VectorSearch(engine)
    with engine.begin() as conn:  # 300 rows: a sort is cheaper, so forbid it to see that the index can serve the query
        cursor = conn.connection.driver_connection.cursor()
        cursor.execute("SET LOCAL enable_sort = off")
        cursor.execute("EXPLAIN " + repo.nearest_sql(space, 5), repo._query_params(data[0], space))
        plan = "\n".join(row[0] for row in cursor.fetchall())
    if method == "halfvec":
        assert repo.index_ready(space)
        assert f"Index Scan using {index_name(space)}" in plan, plan
    else:
        assert service.ensure_index("p", "big", dimension) is None and "hnsw" not in plan
    assert list(service.neighbours_of(hashes[5], k=3)["request_hash"])[0] != hashes[5]


def test_build_settings_are_chosen_by_the_number_of_vectors():
    """HNSW below IVFFLAT_MIN_ROWS, IVFFlat with sqrt(N) lists from there; memory for the whole graph (or the
    IVFFlat sample), bounded by a quarter of the machine and 4 GB; parallel workers only for big spaces."""
    small = index_build_settings(5_000, 384, cpus=8, memory_bytes=16 * 2**30)
    below = index_build_settings(99_999, 384, cpus=8, memory_bytes=16 * 2**30)
    big = index_build_settings(1_000_000, 384, cpus=8, memory_bytes=16 * 2**30)
    assert small == IndexBuild(memory_mb=64, workers=0, method="hnsw", lists=0)
    assert below.method == "hnsw" and 100 <= below.memory_mb <= 200  # ~110 MB of halfvec graph, with room
    assert big.method == "ivfflat" and big.lists == 1_000 and big.workers == 7
    assert 235 <= big.memory_mb <= 400  # pgvector: "memory required is 235 MB" at 1,000 lists of 384-d
    assert index_build_settings(100_000, 384, cpus=2).method == "ivfflat"
    assert index_build_settings(200_000, 384, cpus=2, memory_bytes=2 * 2**30) == IndexBuild(92, 1, "ivfflat", 447)
    assert index_build_settings(90_000, 3_072, cpus=2, memory_bytes=2 * 2**30).memory_mb == 512  # the quarter
    assert "maintenance_work_mem 512 MB, 1 parallel worker" in IndexBuild(512, 1).describe()
    assert "IVFFlat (1,000 lists, 10 probed per search)" in big.describe()
    assert "HNSW (m 16, ef_construction 64)" in small.describe()
    assert [ivfflat_probes(n) for n in (4, 55, 1_000, 4_000)] == [4, 10, 10, 40]


def clustered(rng: np.random.Generator, n: int, blobs: int, dim: int) -> np.ndarray:
    """n unit vectors around `blobs` random directions, each blob's noise as large as its mean (cosine ~0.7)."""
    means = rng.normal(size=(blobs, dim))
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    data = means[rng.integers(0, blobs, n)] + rng.normal(scale=1 / np.sqrt(dim), size=(n, dim))
    return (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("threshold, method", [(10_000, "hnsw"), (2_000, "ivfflat")])
def test_the_index_is_chosen_by_size_said_and_finds_clustered_neighbours(engine, monkeypatch, threshold, method):
    """Through a small threshold: a space of 3,000 clustered vectors gets IVFFlat at or above IVFFLAT_MIN_ROWS
    and HNSW below; the notice says which; searches are sized by the method (IVFFlat: its probes) and find
    at least 90% of the exact top-10 of queries near the data (IVFFlat with its default 1 probe: 0.83)."""
    monkeypatch.setattr(vector_search, "IVFFLAT_MIN_ROWS", threshold)
    rng = np.random.default_rng(11)
    data = clustered(rng, 3_000, 40, 32)
    hashes = store(engine, data)
    notices: list[str] = []
    service = SimilarityService(engine, notice=notices.append)
    queries = data[rng.integers(0, len(data), 30)] + rng.normal(scale=0.1, size=(30, 32)).astype(np.float32)
    found = [service.search_vector(q, "p", "m", k=10) for q in queries]
    space = VectorSpace("p", "m", 32)
    index = service.vectors.index_ready(space)
    assert index is not None and index.method == method and index.name == index_name(space)
    assert len(notices) == 1 and ("IVFFlat (55 lists, 10 probed" if method == "ivfflat" else "HNSW (m 16") in notices[0]
    expected = "SET LOCAL ivfflat.probes = 10" if method == "ivfflat" else "SET LOCAL hnsw.ef_search = 100"
    assert service.vectors.search_settings(10, index) == expected
    assert index.lists == (55 if method == "ivfflat" else 0)
    plan = service.vectors.explain_nearest(queries[0], space, k=10, index=index)
    assert f"Index Scan using {index.name}" in plan, plan
    recall = np.mean([
        len(set(f["request_hash"]) & {hashes[i] for i in brute_force(data, q, 10)[0]}) / 10 for f, q in zip(found, queries)
    ])
    assert recall >= 0.9, recall


def test_the_build_applies_its_memory_and_workers(database_url):
    """The build runs with the chosen maintenance_work_mem (pgvector says when the graph outgrows it) and workers."""
    from studyllm_core.db.engine import make_engine

    engine = make_engine(database_url)  # a fresh pool, so every connection gets the notice handler
    notices = []
    event.listen(engine, "connect", lambda dbapi, record: dbapi.add_notice_handler(lambda d: notices.append(d.message_primary)))
    rng = np.random.default_rng(8)
    store(engine, rng.normal(size=(3_000, 64)), model="tight")
    store(engine, rng.normal(size=(3_000, 64)), model="roomy", prefix="r")
    search = VectorSearch(engine)
    with Statements(engine, "max_parallel_maintenance_workers") as statements:
        search.ensure_index(VectorSpace("p", "tight", 64), build=IndexBuild(memory_mb=1, workers=3))
    assert any("no longer fits into maintenance_work_mem" in n for n in notices), notices
    assert any("max_parallel_maintenance_workers = 3" in s for s in statements.seen)
    notices.clear()
    search.ensure_index(VectorSpace("p", "roomy", 64), build=IndexBuild(memory_mb=64, workers=0))
    assert not any("maintenance_work_mem" in n for n in notices), notices
    engine.dispose()


def test_a_space_s_old_vector_index_is_replaced_by_the_halfvec_one(engine):
    data = np.random.default_rng(9).normal(size=(200, 8)).astype(np.float32)
    store(engine, data)
    space = VectorSpace("p", "m", 8)
    legacy = legacy_hnsw_index_name(space)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"CREATE INDEX {legacy} ON embedding_vectors USING hnsw ((vector::vector(8)) vector_cosine_ops) "
                          "WHERE provider = 'p' AND model = 'm' AND dimension = 8 AND server = ''"))
    assert SimilarityService(engine).ensure_index("p", "m", 8) == index_name(space) != legacy
    with engine.connect() as conn:
        names = set(conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'embedding_vectors'")).scalars())
    assert index_name(space) in names and legacy not in names
