"""EmbeddingService over real HTTP (loopback server) and the real database."""

import threading
import time

import numpy as np
import pytest
from sqlalchemy import text

from studyllm_core.db.calls import CallFilter, RawCallRepository
from studyllm_core.db.groups import GroupRepository
from studyllm_core.providers.errors import AuthenticationError
from studyllm_core.providers.registry import create_provider
from studyllm_core.services.capture import embedding as embedding_module
from studyllm_core.services.capture.embedding import DimensionMismatchError, EmbeddingService
from studyllm_core.services.capture.retry import RetryPolicy

from support import TEST_API_KEY as KEY, Statements
FAST_RETRY = RetryPolicy(max_attempts=4, initial_wait_s=0.01, max_wait_s=0.05)


@pytest.fixture(autouse=True)
def _forget_validated_models():
    embedding_module._validated_models.clear()


def make_service(engine, srv, *, key=KEY, batch_size=4, concurrency=3, timeout=5.0, **kw):
    provider = create_provider("openai-compatible", base_url=srv.base_url, api_key=key, timeout=timeout)
    return EmbeddingService(
        engine, provider, provider_name="openai-compatible", model="stub-embedding",
        batch_size=batch_size, concurrency=concurrency, retry=kw.pop("retry", FAST_RETRY), **kw,
    )


def texts(n, prefix="text"):
    return [f"{prefix} number {i}" for i in range(n)]


def test_first_run_embeds_stores_and_records(engine, stub):
    inputs = texts(10)
    out = make_service(engine, stub).embed(inputs, group_name="g1")
    assert out.summary() == {
        "texts": 10, "unique": 10, "cached": 0, "embedded": 10, "failed": 0, "api_requests": 3, "group_id": out.group_id,
    }
    expected = np.array([stub.embedding(t) for t in inputs], dtype=np.float32)
    np.testing.assert_allclose(out.vectors, expected, rtol=1e-6)
    calls = RawCallRepository(engine).list(CallFilter(modality="embedding"))
    assert [c.status for c in calls] == ["success"] * 3
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM embedding_vectors")).scalar_one() == 10
        orphans = conn.execute(
            text("SELECT count(*) FROM embedding_vectors v JOIN raw_calls r ON r.id = v.raw_call_id WHERE r.status <> 'success'")
        ).scalar_one()
        assert orphans == 0
        assert conn.execute(text("SELECT count(*) FROM embedding_leases")).scalar_one() == 0
    group = GroupRepository(engine).find_group("g1", "embedding_batch")
    assert group.id == out.group_id
    assert sorted(GroupRepository(engine).member_ids(group.id)) == [c.id for c in calls]


def test_second_run_is_served_from_cache_with_identical_vectors(engine, stub):
    inputs = texts(9) + ["text number 1", "  text   number 2 "]  # duplicates, before and after normalising
    first = make_service(engine, stub).embed(inputs)
    assert first.unique == 9 and first.embedded == 9
    requests_before = stub.stats.requests_total
    second = make_service(engine, stub).embed(inputs)
    assert stub.stats.requests_total == requests_before
    assert second.summary()["api_requests"] == 0 and second.cached == 9 and second.embedded == 0
    np.testing.assert_array_equal(first.vectors, second.vectors)
    np.testing.assert_array_equal(second.vectors[9], second.vectors[1])
    for t in texts(9):
        assert stub.stats.text_count(t)["total"] == 1


def test_transient_faults_are_retried_and_each_attempt_recorded(engine, stub):
    stub.faults.fail_next(1, "server_error")
    stub.faults.fail_next(1, "unavailable")
    stub.faults.fail_next(1, "malformed_json")
    out = make_service(engine, stub, batch_size=8).embed(texts(8))
    assert out.failed == 0 and out.embedded == 8 and out.api_requests == 4
    calls = RawCallRepository(engine).list()
    assert [c.status for c in calls] == ["failed", "failed", "failed", "success"]
    assert [c.error_json["attempt"] for c in calls[:3]] == [1, 2, 3]
    assert [c.error_json["type"] for c in calls[:3]] == ["server_error", "server_error", "malformed_response"]
    assert calls[3].metadata_json["attempt"] == 4
    assert all(c.request_json["input"] == texts(8) for c in calls)


def test_retry_after_is_honoured(engine, stub):
    stub.faults.set(retry_after_s=1.0)
    stub.faults.fail_next(1, "rate_limit")
    started = time.perf_counter()
    out = make_service(engine, stub, batch_size=8).embed(texts(4))
    elapsed = time.perf_counter() - started
    assert out.embedded == 4
    assert elapsed >= 0.95  # waited what the server asked, not the 10 ms backoff
    [failed, ok] = RawCallRepository(engine).list()
    assert failed.error_json["type"] == "rate_limit" and failed.error_json["retry_after"] == pytest.approx(1.0)
    assert ok.status == "success"


def test_bad_key_is_attempted_once_and_stops_the_run(engine, stub):
    with pytest.raises(AuthenticationError) as info:
        make_service(engine, stub, key="sk-wrong-9876543210zyxwvuSECRET").embed(texts(20))
    assert "sk-wrong-9876543210zyxwvuSECRET" not in str(info.value)
    assert stub.stats.requests_total == 1
    [call] = RawCallRepository(engine).list()
    assert call.status == "failed" and call.error_json["type"] == "auth"
    assert "sk-wrong" not in str(call.error_json) and "sk-wrong" not in str(call.request_json)


def test_unusable_texts_are_skipped_counted_and_recorded(engine, stub):
    inputs = ["fine", "", "   \t\n ", "nul\x00byte", "bad \udcff utf8", "x" * 1_000_000, "fine"]
    out = make_service(engine, stub).embed(inputs)
    assert out.failed == 5 and sorted(out.failures) == [1, 2, 3, 4, 5]
    assert "empty" in out.failures[1] and "UTF-8" in out.failures[4] and "exceeds the limit" in out.failures[5]
    assert "NUL character" in out.failures[3]  # refused, not silently removed
    assert out.unique == 1 and out.embedded == 1
    assert np.isnan(out.vectors[1]).all() and np.isfinite(out.vectors[0]).all()
    assert stub.stats.text_count("nulbyte")["total"] == 0
    rejected = RawCallRepository(engine).list(CallFilter(status="failed"))
    assert len(rejected) == 5
    assert "nul\ufffdbyte" in [c.request_json["input"][0] for c in rejected]  # the NUL shown, JSONB-safe
    assert all(c.error_json["type"] == "invalid_input" for c in rejected)
    assert max(len(c.request_json["input"][0]) for c in rejected) <= 2_000


def test_content_rejection_is_narrowed_to_the_offending_batch_half(engine, stub):
    stub.faults.fail_next(1, "content_filter")
    out = make_service(engine, stub, batch_size=8, concurrency=1).embed(texts(8))
    # The rejected batch was split in halves, which then went through.
    assert out.embedded == 8 and out.failed == 0
    assert [c.request_json["input"].__len__() for c in RawCallRepository(engine).list()] == [8, 4, 4]


def test_dimension_contradicting_the_cache_stops_the_run(engine, stub):
    """The model behind a name changed on the same server: its new vectors contradict the cached dimension."""
    make_service(engine, stub).embed(texts(4))
    embedding_module._validated_models.clear()
    stub.dim = 24
    with pytest.raises(DimensionMismatchError, match="returned 24-dimensional vectors, but 16"):
        make_service(engine, stub).embed(texts(8, "new"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM embedding_vectors")).scalar_one() == 4
        assert conn.execute(text("SELECT count(*) FROM embedding_leases")).scalar_one() == 0


def test_the_server_is_part_of_the_embedding_space(engine, stub):
    """Two openai-compatible servers with one model name are two spaces: no vector of one is served for the
    other, each raw call records the server, and a different dimension on the other server is no contradiction."""
    from studyllm_core.testing import OpenAIStubServer

    first = make_service(engine, stub).embed(texts(4))
    with OpenAIStubServer(dim=24, api_keys=[KEY]) as other:
        second = make_service(engine, other).embed(texts(4))
        assert second.cached == 0 and second.embedded == 4 and second.vectors.shape == (4, 24)
        assert other.stats.snapshot()["embedding_texts_unique"] == 4
        again = make_service(engine, stub).embed(texts(4))  # the first server's vectors are still its own
        assert again.cached == 4 and np.array_equal(again.vectors, first.vectors)
        with engine.connect() as conn:
            servers = dict(conn.execute(text("SELECT server, count(*) FROM embedding_vectors GROUP BY server")).all())
            urls = set(conn.execute(text("SELECT request_json->>'base_url' FROM raw_calls")).scalars())
        assert servers == {stub.base_url: 4, other.base_url: 4} and urls == {stub.base_url, other.base_url}


def test_all_zero_vectors_are_never_cached(engine, stub):
    stub.faults.fail_next(1, "zero_vectors", endpoint="embeddings")
    out = make_service(engine, stub).embed(texts(4))
    assert out.embedded == 4 and out.api_requests == 2  # the zero answer was retried like any malformed one
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM embedding_vectors WHERE norm = 0")).scalar_one() == 0
        reason = conn.execute(text("SELECT error_json->>'reason' FROM raw_calls WHERE status = 'failed'")).scalar_one()
    assert reason == "zero"


def test_concurrent_runs_send_each_text_once(engine, stub):
    stub.faults.set(latency_s=0.02)
    inputs = texts(120)
    outcomes = []

    def run():
        outcomes.append(make_service(engine, stub, batch_size=8, concurrency=4).embed(inputs))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outcomes) == 3 and all(o.failed == 0 for o in outcomes)
    assert sum(o.embedded for o in outcomes) == 120
    assert all(stub.stats.text_count(t)["total"] == 1 for t in inputs)
    for o in outcomes[1:]:
        np.testing.assert_array_equal(o.vectors, outcomes[0].vectors)


def test_a_lease_left_by_a_dead_session_is_taken_over(engine, stub):
    service = make_service(engine, stub)
    h = service.request_hash("orphan text")
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO embedding_leases (request_hash, owner_pid, owner_started) VALUES (:h, 999999, now())"), {"h": h}
        )
    out = service.embed(["orphan text"])
    assert out.embedded == 1 and out.failed == 0


def test_cached_rerun_statements_do_not_grow_with_the_number_of_texts(engine, stub):
    """A cached re-run is set-based: as many statements for 60 texts as for 6 (one look-up per chunk,
    one insert of the group's items per chunk), and the vectors come back in input order."""
    service = make_service(engine, stub, batch_size=50)
    counts = []
    for n, prefix in ((6, "few"), (60, "many")):
        inputs = texts(n, prefix) + texts(2, prefix)  # two duplicates: rows map to unique texts
        service.embed(inputs)
        with Statements(engine) as statements:
            out = service.embed(inputs, group_name=f"again-{n}")
        assert out.cached == n and out.api_requests == 0 and out.failed == 0
        np.testing.assert_allclose(out.vectors, np.array([stub.embedding(t) for t in inputs]), rtol=1e-6)
        counts.append(len(statements.seen))
        with engine.connect() as conn:
            items = conn.execute(text("SELECT count(*) FROM group_embeddings WHERE group_id = :g"), {"g": out.group_id})
            assert items.scalar_one() == n
    assert counts[0] == counts[1]


def test_a_run_that_keeps_no_vectors_caches_them_and_reads_none_back(engine, stub):
    """keep_vectors=False (`studyllm embed` without --out): vectors go to the cache, the outcome holds none,
    and a cached re-run of the same texts does not even read the table: their set of embeddings is known."""
    service = make_service(engine, stub, batch_size=4)
    inputs = texts(9, "lean")
    first = service.embed(inputs, keep_vectors=False)
    assert first.vectors.shape == (9, 0) and first.embedded == 9 and first.failed == 0
    with Statements(engine, "embedding_vectors") as statements:
        again = service.embed(inputs + [""], keep_vectors=False)
    assert again.cached == 9 and again.api_requests == 0 and list(again.failures) == [9]
    assert statements.seen == []
    full = service.embed(inputs)  # the same cache entries, read back as vectors
    np.testing.assert_allclose(full.vectors, np.array([stub.embedding(t) for t in inputs]), rtol=1e-6)


def _items(engine, group_id):
    with engine.connect() as conn:
        return sorted(conn.execute(text("SELECT embedding_id FROM group_embeddings WHERE group_id = :g"), {"g": group_id}).scalars())


def test_a_rerun_of_the_same_texts_stores_one_reference_to_their_set_and_reads_as_before(engine, stub):
    """The re-run's group gets one row naming the first run's sealed set (no item copied, no cache look-up);
    its items and input calls read as the first run's; a third run does the same (idempotent)."""
    service = make_service(engine, stub, batch_size=4)
    inputs = texts(10, "set")
    first = service.embed(inputs, keep_vectors=False)
    calls = sorted(GroupRepository(engine).member_ids(first.group_id))
    for run in range(2):
        with Statements(engine) as statements:
            again = service.embed(list(reversed(inputs)) + inputs[:3], keep_vectors=False)  # order, duplicates: same set
        assert again.cached == 10 and again.api_requests == 0 and again.failed == 0
        touched = " ".join(statements.seen)
        assert "embedding_vectors" not in touched and "embedding_set_items" not in touched
        assert _items(engine, again.group_id) == _items(engine, first.group_id) and len(_items(engine, first.group_id)) == 10
        assert sorted(GroupRepository(engine).member_ids(again.group_id)) == calls
        with engine.connect() as conn:
            roles = set(conn.execute(text("SELECT role FROM group_members WHERE group_id = :g"), {"g": again.group_id}).scalars())
            sets = conn.execute(text("SELECT count(*), count(DISTINCT s.digest) FROM embedding_sets s")).one()
        assert roles == {"input"}
        assert tuple(sets) == (1, 1)  # one set in all: the re-runs only reference it


def test_a_different_set_of_texts_gets_its_own_set_with_exactly_its_items(engine, stub):
    service = make_service(engine, stub, batch_size=4)
    inputs = texts(10, "sub")
    service.embed(inputs, keep_vectors=False)
    part = service.embed(inputs[:6], keep_vectors=False)
    assert part.cached == 6
    with engine.connect() as conn:
        texts_of_part = set(conn.execute(text(
            "SELECT v.text FROM group_embeddings g JOIN embedding_vectors v ON v.id = g.embedding_id WHERE g.group_id = :g"
        ), {"g": part.group_id}).scalars())
        sealed = conn.execute(text("SELECT count(*) FROM embedding_sets WHERE digest IS NOT NULL")).scalar_one()
    assert texts_of_part == set(inputs[:6]) and sealed == 2


def test_a_run_stopped_part_way_keeps_its_items_and_leaves_its_set_unaddressed(engine, stub):
    """Items join the run's set with each stored batch: a run cut short keeps them; only a complete run
    gives its set a content address, so a later run of all the texts does not reuse a partial set."""
    service = make_service(engine, stub, batch_size=2, concurrency=1)
    inputs = texts(8, "cut")
    service.embed(inputs[:4], keep_vectors=False)  # 4 cached, then a run of all 8 that the key stops part way
    stub.faults.set(fail_next={"n": 1, "kind": "unauthorized"})
    with pytest.raises(AuthenticationError):
        service.embed(inputs, group_name="cut-short", keep_vectors=False)
    group = GroupRepository(engine).find_group("cut-short", "embedding_batch")
    assert len(_items(engine, group.id)) == 4  # the cached ones, kept although the run stopped
    with engine.connect() as conn:
        digests = conn.execute(text(
            "SELECT s.digest FROM embedding_sets s JOIN group_embedding_sets g ON g.set_id = s.id WHERE g.group_id = :g"
        ), {"g": group.id}).scalars().all()
    assert digests == [None]
    full = service.embed(inputs, keep_vectors=False)
    assert full.embedded == 4 and full.cached == 4 and len(_items(engine, full.group_id)) == 8


def test_a_run_that_completes_with_a_failed_text_leaves_its_set_unaddressed(engine, stub):
    service = make_service(engine, stub, batch_size=1, concurrency=1)
    stub.faults.fail_next(1, "content_filter")  # the first text is refused: the run ends with one failure
    out = service.embed(texts(3, "refused"), keep_vectors=False)
    assert out.failed == 1 and out.embedded == 2 and len(_items(engine, out.group_id)) == 2
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM embedding_sets WHERE digest IS NOT NULL")).scalar_one() == 0


def test_a_stalled_writer_stops_new_requests_at_twice_the_concurrency_and_the_run_then_completes(engine, stub):
    """Answers are stored behind the requests, but boundedly: while the database cannot take vectors, at most
    2 x concurrency batches are sent (and so held, or paid for again by a run killed meanwhile); then the
    writes go through and the run finishes with every vector cached and no lease left."""
    service = make_service(engine, stub, batch_size=2, concurrency=2)
    inputs = texts(40, "stall")
    outcomes = []
    with engine.connect() as blocker:
        blocker.execute(text("LOCK TABLE embedding_vectors IN SHARE MODE"))  # inserts wait, reads go on
        worker = threading.Thread(target=lambda: outcomes.append(service.embed(inputs, keep_vectors=False)))
        worker.start()
        deadline = time.monotonic() + 30
        while stub.stats.snapshot()["requests_total"] < 4 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.5)  # room for more requests, were they not bounded
        sent_while_stalled = stub.stats.snapshot()["requests_total"]
        blocker.rollback()
    worker.join(60)
    assert sent_while_stalled == 2 * 2
    assert outcomes and outcomes[0].embedded == 40 and outcomes[0].api_requests == 20 and outcomes[0].failed == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM embedding_vectors")).scalar_one() == 40
        assert conn.execute(text("SELECT count(*) FROM embedding_leases")).scalar_one() == 0


def test_a_failed_write_stops_the_run_with_the_database_error_and_frees_its_leases(engine, stub):
    """A write behind the requests that fails is not lost: the run stops with it (one line naming the step),
    later batches are not sent, and the leases of what was not stored are free for the next run."""
    from studyllm_core.errors import DatabaseError

    with engine.begin() as conn:
        conn.execute(text(
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'the disk refused it'; END $$"))
        conn.execute(text(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON embedding_vectors FOR EACH ROW "
            "WHEN (NEW.text LIKE 'poison%') EXECUTE FUNCTION refuse_poison()"))
    service = make_service(engine, stub, batch_size=2, concurrency=2)
    inputs = ["poison 0", "poison 1"] + texts(200, "after")
    with pytest.raises(DatabaseError, match="storing embeddings failed: .*the disk refused it"):
        service.embed(inputs, keep_vectors=False)
    assert stub.stats.snapshot()["requests_total"] < 101  # stopped, not carried on to the last batch
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM embedding_leases")).scalar_one() == 0
        stored = conn.execute(text("SELECT count(*) FROM embedding_vectors")).scalar_one()
        orphans = conn.execute(text(
            "SELECT count(*) FROM embedding_vectors v LEFT JOIN raw_calls r ON r.id = v.raw_call_id "
            "WHERE r.id IS NULL OR r.status <> 'success'")).scalar_one()
    assert stored < 200 and orphans == 0


def test_a_first_run_in_a_new_space_skips_the_cache_look_up_and_a_later_one_does_it(engine, stub, monkeypatch):
    """Nothing cached for this provider, model and server: the look-up of every key (a query per 10,000)
    is skipped; once the space has vectors, a run of partly new texts looks them up and reuses them."""
    from studyllm_core.db.embedding_cache import EmbeddingCache

    looked_up = []
    lookup = EmbeddingCache.lookup_chunks
    monkeypatch.setattr(EmbeddingCache, "lookup_chunks", lambda self, hashes, **kw: (looked_up.append(len(hashes)), lookup(self, hashes, **kw))[1])
    service = make_service(engine, stub, batch_size=4)
    first = service.embed(texts(6, "space"))
    assert first.embedded == 6 and looked_up == []
    second = service.embed(texts(9, "space"))
    assert second.cached == 6 and second.embedded == 3 and looked_up == [9]
    np.testing.assert_allclose(second.vectors, np.array([stub.embedding(t) for t in texts(9, "space")]), rtol=1e-6)
