"""Study tools at scale: every StudyService query over 1,000,000 raw calls, and top-10 similarity search
over 100,000 vectors through the per-model HNSW index.

Run: python benchmarks/bench_study.py [--rows 1000000] [--vectors 100000] [--dim 384] [--repeats 5]
Prints the median time of each query (goals: < 1 s each; similarity p50 < 50 ms), from one run on
one fresh embedded database. Data is generated: 8 provider/models (one without a price), 10% of
calls failed/timed out/cancelled, three kinds of token records, prompts drawn from a Zipf-like
vocabulary, 30 days of timestamps in arrival order (raw_calls is a log); vectors are clustered (real
embeddings are), not uniform noise.
After loading, VACUUM ANALYZE stands in for the autovacuum run a real database gets after a bulk
insert (it sets the visibility map that index-only scans need).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import datetime, timedelta, timezone

import numpy as np
from sqlalchemy import text

from _db import scratch_database
from studyllm_core.db.calls import CallFilter, NewCall, RawCallRepository
from studyllm_core.db.groups import GroupRepository
from studyllm_core.db.embedding_cache import EmbeddingCache, NewVectors
from studyllm_core.db.vector_search import VectorSpace
from studyllm_core.services.study.similarity import SimilarityService
from studyllm_core.services.study.analytics import StudyService

MODELS = [
    ("openai", "gpt-4o-mini"), ("openai", "gpt-4o"), ("openai", "text-embedding-3-small"), ("azure", "gpt-4o-mini"),
    ("hyperbolic", "meta-llama/Llama-3.3-70B-Instruct"), ("local", "all-MiniLM-L6-v2"),
    ("openai-compatible", "qwen2.5-7b-instruct"), ("extractive", "central-sentences"),
]
STATUSES = ["success", "failed", "timeout", "cancelled"]
ERRORS = ["rate_limit", "server_error", "bad_request", "connection"]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
DAYS = 30


def make_calls(n: int, seed: int = 0):
    """Generated calls, streamed (the 1M NewCall objects are never all in memory)."""
    rng = np.random.default_rng(seed)
    vocab = [f"word{i}" for i in range(5_000)]
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    chunk = 50_000
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        model = rng.integers(0, len(MODELS), m)
        status = rng.choice(4, m, p=[0.9, 0.06, 0.03, 0.01])
        latency = rng.gamma(2.0, 150.0, m)
        prompt_tokens, completion_tokens = rng.integers(5, 800, m), rng.integers(1, 400, m)
        kind = rng.integers(0, 3, m)
        # A log: calls arrive in time order (each chunk covers its own stretch of the 30 days).
        span = DAYS * 86400 / n
        seconds = np.sort(rng.integers(int(start * span), int((start + m) * span), m))
        words = rng.choice(len(vocab), (m, 8), p=zipf)
        for j in range(m):
            i = start + j
            provider, name = MODELS[model[j]]
            s = STATUSES[status[j]]
            p, c = int(prompt_tokens[j]), int(completion_tokens[j])
            tokens = None if s != "success" else (
                {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c} if kind[j] else {"total_tokens": p + c})
            yield NewCall(
                provider=provider, model=name, modality="chat", status=s,
                request_json={"prompt": " ".join(vocab[w] for w in words[j]), "temperature": 0.2},
                response_json={"text": f"answer {i}"} if s == "success" else None,
                error_json=None if s == "success" else {"type": ERRORS[i % 4] if s == "failed" else s, "message": f"error {i % 7}"},
                latency_ms=float(latency[j]), tokens_json=tokens, metadata_json={"attempt": 1},
                request_hash=f"{i:064x}", created_at=T0 + timedelta(seconds=int(seconds[j])),
            )


def clustered_vectors(n: int, dim: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(max(n // 100, 1), dim)).astype(np.float32)
    points = centers[rng.integers(0, len(centers), n)] + 0.6 * rng.normal(size=(n, dim)).astype(np.float32)
    return points.astype(np.float32)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def vacuum(engine, table: str) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"VACUUM ANALYZE {table}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    with scratch_database() as (engine, _):
        repo = RawCallRepository(engine)
        start = time.perf_counter()
        ids = repo.insert_many(make_calls(args.rows))
        load_s = time.perf_counter() - start
        group = GroupRepository(engine).ensure_group("batch", "bench-sample")
        GroupRepository(engine).add_members(group, ids[::20])  # a 5% group for the group filter
        vacuum(engine, "raw_calls")
        vacuum(engine, "group_members")
        print(f"loaded {args.rows:,} raw calls in {load_s:.1f} s ({args.rows / load_s:,.0f} rows/s)\n")

        study = StudyService(engine)
        last_week = CallFilter(since=T0 + timedelta(days=DAYS - 7))
        cases = [
            ("provider_comparison()", lambda: study.provider_comparison()),
            ("provider_comparison(last 7 days)", lambda: study.provider_comparison(last_week)),
            ("provider_comparison(group, 5%)", lambda: study.provider_comparison(CallFilter(group_id=group))),
            ("calls_over_time(minute)", lambda: study.calls_over_time(bucket="minute")),
            ("calls_over_time(hour)", lambda: study.calls_over_time(bucket="hour")),
            ("calls_over_time(day, openai)", lambda: study.calls_over_time(CallFilter(provider="openai"), bucket="day")),
            ("failure_breakdown()", lambda: study.failure_breakdown()),
            ("summary_stats()", lambda: study.summary_stats()),
            ("recent_calls(50)", lambda: study.recent_calls(limit=50)),
            ("recent_calls(50, azure)", lambda: study.recent_calls(CallFilter(provider="azure"), limit=50)),
            ("search_prompts(rare word)", lambda: study.search_prompts("word4321")),
            ("search_prompts(common word)", lambda: study.search_prompts("word0")),
            ("search_prompts(two words)", lambda: study.search_prompts("word7 word11")),
        ]
        print(f"{'StudyService query over ' + format(args.rows, ',') + ' calls':<44}{'median s':>10}{'rows':>8}  goal < 1 s")
        for name, fn in cases:
            seconds, result = timed(fn, args.repeats)
            rows = len(result) if hasattr(result, "__len__") and not isinstance(result, dict) else 1
            print(f"{name:<44}{seconds:>10.3f}{rows:>8}  {'ok' if seconds < 1 else 'MISSED'}")

        # -- similarity ---------------------------------------------------------------------------
        data = clustered_vectors(args.vectors, args.dim)
        call_id = repo.insert(NewCall(provider="local", model="all-MiniLM-L6-v2", modality="embedding",
                                      status="success", request_json={}))
        start = time.perf_counter()
        for lo in range(0, args.vectors, 10_000):
            hi = min(lo + 10_000, args.vectors)
            with engine.begin() as conn:
                EmbeddingCache.store(conn, NewVectors([f"v{i:09d}" for i in range(lo, hi)], [f"text {i}" for i in range(lo, hi)],
                                                        data[lo:hi], "local", "all-MiniLM-L6-v2", call_id))
        copy_s = time.perf_counter() - start
        vacuum(engine, "embedding_vectors")
        similarity = SimilarityService(engine)
        start = time.perf_counter()
        similarity.ensure_index("local", "all-MiniLM-L6-v2", args.dim)
        build_s = time.perf_counter() - start

        rng = np.random.default_rng(9)
        queries = data[rng.integers(0, args.vectors, args.queries)] + 0.3 * rng.normal(size=(args.queries, args.dim)).astype(np.float32)
        space = VectorSpace("local", "all-MiniLM-L6-v2", args.dim)
        plan = similarity.vectors.explain_nearest(queries[0], space, k=10)
        for q in queries[:10]:  # warm the cache, as a running service would be
            similarity.search_vector(q, "local", "all-MiniLM-L6-v2", k=10)
        latencies, recall = [], []
        unit = data / np.linalg.norm(data, axis=1, keepdims=True)
        for i, q in enumerate(queries):
            start = time.perf_counter()
            found = similarity.search_vector(q, "local", "all-MiniLM-L6-v2", k=10)
            latencies.append((time.perf_counter() - start) * 1000)
            if i < 50:
                truth = np.argsort(-(unit @ (q / np.linalg.norm(q))))[:10]
                recall.append(len({f"v{t:09d}" for t in truth} & set(found["request_hash"])) / 10)
        p50, p95 = np.percentile(latencies, [50, 95])
        print(f"\nsimilarity over {args.vectors:,} vectors of {args.dim} dimensions (clustered)")
        print(f"  COPY into embedding_vectors      {copy_s:8.1f} s")
        print(f"  HNSW index build (once)          {build_s:8.1f} s")
        print(f"  plan uses the HNSW index         {'yes' if 'Index Scan using ix_embedding_vectors_hnsw_' in plan else 'NO'}")
        print(f"  top-10 search p50 / p95          {p50:8.1f} / {p95:.1f} ms   goal p50 < 50 ms: {'ok' if p50 < 50 else 'MISSED'}")
        print(f"  recall@10 vs brute force (50 q)  {np.mean(recall):8.3f}")


if __name__ == "__main__":
    main()
