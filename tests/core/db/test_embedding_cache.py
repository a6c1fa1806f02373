"""EmbeddingCache and EmbeddingLeases: cache reads and writes, and the leases that share work between processes."""

import time

import numpy as np
from sqlalchemy import text

from studyllm_core.db.calls import NewCall, RawCallRepository
from studyllm_core.db.embedding_cache import EmbeddingCache, NewVectors
from studyllm_core.db.leases import EmbeddingLeases


def _call(engine) -> int:
    return RawCallRepository(engine).insert(NewCall(provider="p", model="m", status="success", request_json={}))


def _batch(call_id, hashes, seed=0):
    vectors = np.random.default_rng(seed).random((len(hashes), 3), dtype=np.float32)
    return NewVectors(list(hashes), [f"t{h}" for h in hashes], vectors, "p", "m", call_id)


def test_store_then_lookup_round_trips_vectors(engine):
    call_id = _call(engine)
    batch = _batch(call_id, ["a", "b", "c"])
    with engine.begin() as conn:
        assert EmbeddingCache.store(conn, batch) == 3
    found = EmbeddingCache(engine).lookup(["c", "a", "zzz"])
    assert set(found) == {"a", "c"}
    np.testing.assert_array_equal(found["a"][0], batch.vectors[0])
    assert found["c"][1] == call_id
    assert EmbeddingCache(engine).known_dimension("p", "m") == 3


def test_store_keeps_existing_rows_when_a_hash_is_already_cached(engine):
    call_id = _call(engine)
    with engine.begin() as conn:
        EmbeddingCache.store(conn, _batch(call_id, ["a", "b"], seed=1))
    original = EmbeddingCache(engine).lookup(["a"])["a"][0]
    with engine.begin() as conn:
        assert EmbeddingCache.store(conn, _batch(call_id, ["b", "c"], seed=2)) == 1  # only c is new
    found = EmbeddingCache(engine).lookup(["a", "b", "c"])
    assert set(found) == {"a", "b", "c"}
    np.testing.assert_array_equal(found["a"][0], original)


def test_claims_exclude_cached_and_live_peers_and_free_on_close(engine):
    call_id = _call(engine)
    with engine.begin() as conn:
        EmbeddingCache.store(conn, _batch(call_id, ["cached"]))
    first = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    second = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    assert EmbeddingLeases.claim(first, ["cached", "x", "y"]) == {"x", "y"}
    assert EmbeddingLeases.claim(second, ["x", "y", "z"]) == {"z"}  # x, y belong to a live session
    assert EmbeddingLeases.claim(first, ["x"]) == {"x"}  # re-claiming one's own lease is fine
    first.invalidate()  # the owner's session ends (as in a crash): its leases are free once it is gone
    first.close()
    deadline = time.monotonic() + 10
    while (taken := EmbeddingLeases.claim(second, ["x", "y"])) != {"x", "y"} and time.monotonic() < deadline:
        time.sleep(0.05)  # the backend needs a moment to leave pg_stat_activity
    assert taken == {"x", "y"}
    EmbeddingLeases.release(second, ["x"])
    with engine.connect() as conn:
        left = set(conn.execute(text("SELECT request_hash FROM embedding_leases")).scalars())
    assert left == {"y", "z"}
    EmbeddingLeases.release_all(second)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM embedding_leases")).scalar_one() == 0
    second.close()
