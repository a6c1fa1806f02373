"""EmbeddingCache and EmbeddingLeases: cache reads and writes, and the leases that share work between processes."""

import time

import numpy as np
import pytest
from sqlalchemy import text

from studyllm_core.db.calls import NewCall, RawCallRepository
from studyllm_core.db.embedding_cache import EmbeddingCache, NewVectors, set_digest
from studyllm_core.db.leases import EmbeddingLeases

from support import Statements


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


def test_lookup_chunks_issue_one_query_per_chunk_and_place_vectors_by_position(engine, monkeypatch):
    import psycopg

    call_id = _call(engine)
    stored = [f"h{i:02d}" for i in range(25)]
    batch = _batch(call_id, stored)
    with engine.begin() as conn:
        EmbeddingCache.store(conn, batch)
    wanted = ["missing"] + stored[::-1] + ["also-missing"]  # 27 hashes: 3 chunks of 10
    seen = []  # the look-up runs on a binary psycopg cursor, below SQLAlchemy's events: count its executes
    execute = psycopg.Cursor.execute
    monkeypatch.setattr(psycopg.Cursor, "execute", lambda cur, query, *a, **k: (seen.append(query), execute(cur, query, *a, **k))[1])
    chunks = list(EmbeddingCache(engine).lookup_chunks(wanted, chunk_size=10))
    monkeypatch.undo()
    assert len([q for q in seen if "embedding_vectors" in str(q)]) == 3
    assert all(c.vectors.dtype == np.float32 and c.vectors.flags.c_contiguous for c in chunks)
    # chunks come in the order of the hashes although two connections read them (READERS)
    assert [sorted(set(c.positions // 10)) for c in chunks] == [[0], [1], [2]]
    reader = EmbeddingCache(engine).lookup_chunks(wanted, chunk_size=5)
    next(reader)
    reader.close()  # a caller that stops early: the reads in flight end, the connections go back to the pool
    assert engine.pool.checkedout() == 0
    positions = np.concatenate([c.positions for c in chunks])
    vectors = np.concatenate([c.vectors for c in chunks])
    assert sorted(positions.tolist()) == list(range(1, 26))
    for position, vector in zip(positions, vectors):
        np.testing.assert_array_equal(vector, batch.vectors[stored.index(wanted[position])])
    assert {int(c) for chunk in chunks for c in chunk.call_ids} == {call_id}


def test_add_ids_to_set_is_one_statement_per_chunk_and_idempotent_and_the_group_reads_them(engine):
    from studyllm_core.db.groups import GroupRepository

    call_id = _call(engine)
    with engine.begin() as conn:
        EmbeddingCache.store(conn, _batch(call_id, [f"g{i}" for i in range(7)]))
    ids = np.concatenate([c.ids for c in EmbeddingCache(engine).lookup_chunks([f"g{i}" for i in range(7)])])
    group = GroupRepository(engine).ensure_group("embedding_batch", "ids-test")
    set_id = EmbeddingCache(engine).new_set(group)
    with Statements(engine, "embedding_set_items") as statements:
        EmbeddingCache(engine).add_ids_to_set(set_id, ids, chunk_size=3)
        EmbeddingCache(engine).add_ids_to_set(set_id, ids[:2], chunk_size=3)
    assert len(statements.seen) == 4  # 3 chunks, then 1
    with engine.connect() as conn:
        members = conn.execute(text("SELECT embedding_id FROM group_embeddings WHERE group_id = :g"), {"g": group}).scalars()
        assert sorted(members) == sorted(ids.tolist())


def test_set_digest_is_the_sorted_binary_hashes_whatever_the_order_and_needs_hex_hashes():
    import hashlib
    import random

    hashes = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(1000)]
    expected = hashlib.sha256(b"".join(bytes.fromhex(h) for h in sorted(hashes))).hexdigest()
    shuffled = hashes[:]
    random.Random(1).shuffle(shuffled)
    assert set_digest(hashes) == set_digest(shuffled) == expected
    tied = ["00" * 8 + "aa" * 24, "00" * 8 + "11" * 24, "ff" * 32]  # equal first 8 bytes: the exact sort decides
    assert set_digest(tied) == hashlib.sha256(b"".join(bytes.fromhex(h) for h in sorted(tied))).hexdigest()
    assert set_digest(hashes[:-1]) != expected
    with pytest.raises(ValueError):
        set_digest(["h01"])


def test_a_sealed_set_is_found_by_digest_and_size_and_a_second_equal_set_stays_unaddressed(engine):
    from studyllm_core.db.groups import GroupRepository

    groups = GroupRepository(engine)
    cache = EmbeddingCache(engine)
    first, second = (cache.new_set(groups.ensure_group("embedding_batch", n)) for n in ("s1", "s2"))
    digest = "ab" * 32
    assert cache.find_set(digest, 3) is None
    assert cache.seal_set(first, digest, 3, [5, 4, 5])
    assert cache.seal_set(second, digest, 3, [4]) is False  # content addresses are unique
    found = cache.find_set(digest, 3)
    assert found is not None and found.id == first and found.call_ids == [4, 5]
    assert cache.find_set(digest, 4) is None


def test_store_of_several_batches_is_one_statement_of_each_kind_and_each_row_keeps_its_call_and_set(engine, monkeypatch):
    """The embedding writer stores a pile of answers at once: as many statements for three batches as for one
    (ids reserved in one query, one COPY of the vectors, one lease DELETE, one COPY of set items per set); each
    row keeps its own raw call, each set gets exactly its batches' rows, the leases are gone."""
    import psycopg

    from studyllm_core.db.groups import GroupRepository

    group = GroupRepository(engine).ensure_group("embedding_batch", "pile-test")
    sets = [EmbeddingCache(engine).new_set(group) for _ in range(2)]
    calls = [_call(engine) for _ in range(4)]
    lease = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    EmbeddingLeases.claim(lease, ["one", *(f"p{i}" for i in range(7))])
    seen = []  # store runs on the driver's cursor, below SQLAlchemy's events: count its executes and COPYs
    execute, copy = psycopg.Cursor.execute, psycopg.Cursor.copy
    monkeypatch.setattr(psycopg.Cursor, "execute", lambda cur, q, *a, **k: (seen.append(q), execute(cur, q, *a, **k))[1])
    monkeypatch.setattr(psycopg.Cursor, "copy", lambda cur, q, *a, **k: (seen.append(q), copy(cur, q, *a, **k))[1])
    counts = []
    for batches in (
        [NewVectors(["one"], ["t"], np.ones((1, 3), np.float32), "p", "m", calls[0], set_id=sets[0])],
        [NewVectors([f"p{i}" for i in range(3)], ["t"] * 3, np.full((3, 3), 2, np.float32), "p", "m", calls[1], set_id=sets[0]),
         NewVectors(["p3", "p4"], ["t"] * 2, np.full((2, 3), 3, np.float32), "p", "m", calls[2], set_id=sets[1]),
         NewVectors(["p5", "p6"], ["t"] * 2, np.full((2, 3), 4, np.float32), "p", "m", calls[3], set_id=sets[0])],
    ):
        seen.clear()
        with engine.begin() as conn:
            assert EmbeddingCache.store(conn, *batches) == sum(len(b.request_hashes) for b in batches)
        counts.append(len([q for q in seen if "embedding_" in str(q)]))  # not the driver's type look-ups
    monkeypatch.undo()
    assert counts[0] + 1 == counts[1]  # the second pile's two sets: one more COPY of items, nothing per batch
    found = EmbeddingCache(engine).lookup(["one", *(f"p{i}" for i in range(7))])
    assert {h: int(call) for h, (_, call) in found.items()} == {
        "one": calls[0], "p0": calls[1], "p1": calls[1], "p2": calls[1], "p3": calls[2], "p4": calls[2],
        "p5": calls[3], "p6": calls[3]}
    assert found["p4"][0].tolist() == [3, 3, 3]
    with engine.connect() as conn:
        items = conn.execute(text(
            "SELECT si.set_id, v.request_hash FROM embedding_set_items si JOIN embedding_vectors v ON v.id = si.embedding_id"
        )).all()
        assert conn.execute(text("SELECT count(*) FROM embedding_leases")).scalar_one() == 0
    assert sorted(h for s, h in items if s == sets[0]) == ["one", "p0", "p1", "p2", "p5", "p6"]
    assert sorted(h for s, h in items if s == sets[1]) == ["p3", "p4"]
    lease.close()
