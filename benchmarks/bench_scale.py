"""The whole path at scale: N = 50,000, 200,000 and 1,000,000 unique short texts, and how each stage grows with N.

Run: nice -n 10 python benchmarks/bench_scale.py [--ns 50000,200000,1000000] [--max-n 1000000] [--json]

One fresh embedded database and one loopback OpenAI-compatible server (its own process, base64 vectors of
384 dimensions, --latency seconds per request) serve every N; each N embeds its own texts under its own model
name, so each N is its own vector space with its own HNSW index. Per N, each with its peer from the same run:

- embed: `studyllm embed` (first run) vs a bare AsyncOpenAI loop process over the same batches
  (_bare_embed_loop.py; the SDK asks for base64 too), each with the CPU seconds it, Postgres and the loopback
  server spent meanwhile (on a shared machine the ratio of wall times moves with the load; CPU seconds far less);
- cached: `studyllm embed` again (every text served from the cache);
- sweep: `_scale_sweep.sweep_stage`:
  `studyllm sweep` over the K values, 3 restarts, PCA 50 (the process, and its own K loop), vs scikit-learn
  MiniBatchKMeans / KMeans on the same projected vectors;
- pipeline: the user's path (`studyllm dev` on the same database; prepare_dataset of the same file, then one
  ranged sweep_k run over the same K values, launched as the Launchpad does; each timed from launch to its end)
  vs the CLI sweep of the same run (its peer: the sweep stage runs whenever the pipeline stage does);
- similar: N clustered texts of their own ("cB item I" over 1,000 blobs: the server in blobs mode puts each
  near blob B, so neighbours are meaningful as in real embeddings), embedded by `studyllm embed`; the
  space's index build (the method and settings the defaults chose, said) and top-10 p50/p95 of
  `SimilarityService.search_vector` (what `studyllm similar` runs once the query is embedded), with recall@10
  against exact search over the stored vectors; with --similar-random, the same on the embed stage's
  uniformly random vectors (every neighbour nearly equidistant: the worst case of any index);
- before the sweep and pipeline stages the database is settled (VACUUM ANALYZE of the embed stage's tables and a
  checkpoint), so Postgres's own catching up after a million inserts lands in neither of the two compared;
- size: what the database grew by for these vectors (table, b-tree indexes, HNSW index), per million vectors.

Wall times include each process's start. Then the growth exponent b of each stage between consecutive N
(seconds ∝ N^b); b > 1.1 is flagged. This machine is shared: read ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _db import scratch_database
from _measure import STUDYLLM, cpu_seconds, exponents, print_growth, row, run_measured, run_with_cpu
from _scale_sweep import sweep_stage
from studyllm_core.testing import stub_server_process
from studyllm_core.testing.openai_server import blob_embedding, stub_embeddings

HERE = Path(__file__).parent
BATCH, CONCURRENCY, DIM = 256, 8, 384
K_VALUES = list(range(10, 20))  # `studyllm sweep` clusters every K of --k-min..--k-max: 10 values
RESTARTS, PCA_DIM = 3, 50
QUERIES, RECALL_QUERIES, CLI_CALLS = 200, 30, 5


# -- stages ---------------------------------------------------------------------------------------


def write_texts(path: Path, n: int) -> None:
    with path.open("w") as handle:
        for start in range(0, n, 100_000):
            handle.write("".join(f"scale {n} text {i}: a short reply about topic {i * 7919 % 1009}\n"
                                 for i in range(start, min(n, start + 100_000))))


def embed_stages(path: Path, n: int, model: str, env: dict[str, str], base: str) -> list[dict[str, Any]]:
    cli = [STUDYLLM, "embed", str(path), "--provider", "openai-compatible", "--model", model,
           "--batch-size", str(BATCH), "--concurrency", str(CONCURRENCY), "--json"]
    # The peer first: the embed's writes are flushed by Postgres's checkpoints after it ends, which would land in
    # the window of whatever runs next.
    bare = [sys.executable, str(HERE / "_bare_embed_loop.py"), base, str(path), str(BATCH), str(CONCURRENCY)]
    seconds, rss, _, cpu = run_with_cpu(bare, env)
    peer = row("embed: bare client loop", n, seconds, rss, **cpu)
    seconds, rss, out, cpu = run_with_cpu(cli, env)
    first = json.loads(out)
    assert first["embedded"] == n, first
    rows = [row("embed", n, seconds, rss, **cpu), peer]
    seconds, rss, out, cpu = run_with_cpu(cli, env)
    again = json.loads(out)
    assert again["cached"] == n and again["api_requests"] == 0, again
    rows.append(row("cached re-run", n, seconds, rss, **cpu))
    return rows


STEPS = """query($id: ID!) { runOrError(runId: $id) { ... on Run { stepStats { stepKey startTime endTime } } } }"""


def pipeline_stage(path: Path, n: int, model: str, env: dict[str, str], base: str, ks: list[int]) -> list[dict[str, Any]]:
    """The user's path: `studyllm dev` (webserver + daemon) on the bench's database; the dataset's partition and
    K values added and two runs launched as the Launchpad does (bench_pipeline.launch_run): prepare_dataset with
    the file as its source and PCA_DIM, then one ranged sweep_k run over the K values (RESTARTS restarts, no
    summary rounds: `studyllm sweep`'s settings). Each timed from launch to the run's end (the queue, the run
    process's start and every step), with the run process's peak RSS; the step times say where it went."""
    from bench_pipeline import Dev, follow, launch_run

    from studyllm_pipeline import backfill as bf
    from studyllm_pipeline.partitions import RANGE_END_TAG, RANGE_START_TAG, partition_key

    home = Path(env["STUDYLLM_HOME"])  # attaches to the bench's embedded server by its home (postmaster.pid)
    penv = {k: v for k, v in env.items() if k not in ("STUDYLLM_DATABASE_URL", "DAGSTER_HOME")}
    penv.update(STUDYLLM_EMBED_PROVIDER="openai-compatible", STUDYLLM_EMBED_MODEL=model, STUDYLLM_EMBED_BASE_URL=base,
                STUDYLLM_SUMMARIZER="extractive")
    dataset = f"scale-{n}"
    runs = {}
    with Dev(home, penv) as dev:
        graphql = bf.GraphQL(dev.base, timeout=120)
        axis = bf.ensure_partitions(graphql, dataset, ks)
        assert [int(k) for k in axis if int(k) in ks] == sorted(ks), axis
        launches = [
            ("prepare", "prepare_dataset", {"dagster/partition": dataset},
             {"ops": {"dataset_snapshot": {"config": {"source_path": str(path)}}, "pca": {"config": {"pca_dim": PCA_DIM}}}}),
            ("sweep_k", "sweep_k", {RANGE_START_TAG: partition_key(dataset, min(ks)), RANGE_END_TAG: partition_key(dataset, max(ks))},
             {"ops": {"sweep": {"config": {"n_restarts": RESTARTS, "llm_rounds": 0}}}}),
        ]
        pgdata = home / "pg"
        for label, job, tags, config in launches:
            before, submitted = dev.pids(), time.time()
            services, postgres = dev.service_cpu_s(before), cpu_seconds(pgdata)["postgres_cpu_s"]
            run_id = launch_run(graphql, job, tags, config)
            runs[label] = follow(graphql, dev, submitted, lambda run_id=run_id: run_id, before, until=None, timeout=3600)
            by_service: dict[str, float] = {}
            for pid, t in dev.service_cpu_s(before).items():
                if pid in services:  # those alive throughout
                    name = service_name(pid)
                    by_service[name] = round(by_service.get(name, 0.0) + t - services[pid], 1)
            runs[label]["cpu"] = {"run": round(runs[label]["cpu_s"], 1),
                                  "dev services": round(sum(by_service.values()), 1), **by_service,
                                  "postgres": round(cpu_seconds(pgdata)["postgres_cpu_s"] - postgres, 1)}
            steps = graphql(STEPS, {"id": run_id})["runOrError"]["stepStats"]
            runs[label]["steps"] = {s["stepKey"]: round(s["endTime"] - s["startTime"], 1) for s in steps if s["endTime"]}
        graphql.close()
    total = sum(r["total"] for r in runs.values())
    return [row("pipeline: studyllm dev runs", n, total, max(r["rss"] for r in runs.values()),
                runs={label: {"launch_to_start": round(r["to_start"], 1), "start_to_end": round(r["start_to_results"], 1),
                              "rss_mb": round(r["rss"] / 2**20), "steps": r["steps"], "cpu_s": r["cpu"]}
                          for label, r in runs.items()})]


def service_name(pid: int) -> str:
    """Which of `studyllm dev`'s processes `pid` is: a code server (`api grpc`, or the `code-server start` proxy
    that runs one), the daemon, the webserver, or other (`dagster dev`, the reaper)."""
    import psutil

    try:
        cmd = " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return "gone"
    # The daemon's command line carries the instance's settings (JSON), which can name anything: match on the module.
    markers = (("_daemon run", "daemon"), ("dagster_webserver", "webserver"), ("api grpc", "code server"),
               ("code-server start", "code server"))
    for marker, name in markers:
        if marker in cmd:
            return name
    return "other"


def settle(engine) -> None:  # noqa: ANN001
    """VACUUM (ANALYZE) the tables the embed stage filled, and a checkpoint: Postgres's autovacuum of a million
    new rows (about a minute, seen with pg_stat_activity) and the checkpoint would otherwise land in whichever
    timed stage runs next, the CLI sweep in one run and the pipeline in another."""
    start = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("embedding_vectors", "embedding_set_items", "embedding_leases", "raw_calls"):
            conn.exec_driver_sql(f"VACUUM (ANALYZE) {table}")
        conn.exec_driver_sql("CHECKPOINT")
    print(f"  database settled (VACUUM ANALYZE, CHECKPOINT) in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


def sizes(engine) -> dict[str, int]:  # noqa: ANN001
    from sqlalchemy import text

    sql = text("SELECT pg_table_size('embedding_vectors'), pg_indexes_size('embedding_vectors'), "
               "pg_total_relation_size('raw_calls'), pg_total_relation_size('embedding_set_items') + pg_total_relation_size('embedding_sets') "
               "+ pg_total_relation_size('group_embedding_sets'), pg_database_size(current_database())")
    with engine.connect() as conn:
        table, indexes, calls, members, database = conn.execute(sql).one()
    return {"table": table, "indexes": indexes, "raw_calls": calls, "group_embeddings": members, "database": database}


SIMILAR_BLOBS = 1_000  # clusters of the similar stage's texts: ~N/1,000 texts each


def write_blob_texts(path: Path, n: int, blobs: int) -> None:
    """n texts "cB item I" over `blobs` blobs (round robin): the loopback server in "blobs" mode puts each near blob B."""
    with path.open("w") as handle:
        for start in range(0, n, 100_000):
            handle.write("".join(f"c{i % blobs} item {i} of {n}\n" for i in range(start, min(n, start + 100_000))))


def similar_stage(engine, n: int, env: dict[str, str], work: Path, *, random_model: str | None = None,  # noqa: ANN001
                  blobs: int = SIMILAR_BLOBS) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The similarity index of a space of n clustered vectors (texts over `blobs` blobs, embedded by `studyllm
    embed` through the loopback server in blobs mode), its build, top-10 p50/p95 and recall@10 against exact
    search; with `random_model` (a space of n uniformly random vectors, HNSW's worst case), the same on it."""
    path = work / f"blobs-{n}.txt"
    write_blob_texts(path, n, blobs)
    model = f"bench-similar-{n}"
    seconds, _, _, _ = run_measured([STUDYLLM, "embed", str(path), "--provider", "openai-compatible", "--model", model,
                                  "--batch-size", str(BATCH), "--concurrency", str(CONCURRENCY), "--json"], env)
    print(f"  N={n:,} similar: embedded {n:,} clustered texts ({blobs:,} blobs) in {seconds:.1f} s", file=sys.stderr, flush=True)
    queries = np.array([blob_embedding(model, f"c{i * 7 % blobs} query {i}", DIM) for i in range(QUERIES)], dtype=np.float32)
    rows, index_bytes = _similar_space(engine, n, model, queries, "")
    rows += _similar_cli(n, env, rows[-1]["first_ids"])
    if random_model is not None:
        random_queries = stub_embeddings(random_model, [f"query {i}" for i in range(QUERIES)], DIM).astype(np.float32)
        rows += _similar_space(engine, n, random_model, random_queries, " (random)")[0]
    return rows, {"hnsw_index": index_bytes}


def _similar_space(engine, n: int, model: str, queries: np.ndarray, tag: str) -> tuple[list[dict[str, Any]], int]:  # noqa: ANN001
    """Build the space's index (timed, its choice said), then top-10 through `SimilarityService.search_vector`
    (what `studyllm similar` runs once the query is embedded) for every query; recall@10 against exact search."""
    from sqlalchemy import text

    from studyllm_core.db.vector_search import index_name
    from studyllm_core.services.study.similarity import SimilarityService

    chose: list[str] = []
    service = SimilarityService(engine, ddl_engine=engine, notice=chose.append)
    [space] = [s for s in service.vectors.spaces(counted=False) if s.model == model]
    start = time.perf_counter()
    service.ensure_index(space.provider, space.model, space.dimension, space.server)
    build_s = time.perf_counter() - start
    print(f"  N={n:,} similar{tag}: {' '.join(chose)}; {build_s:.1f} s", file=sys.stderr, flush=True)
    with engine.connect() as conn:
        index_bytes = conn.execute(text("SELECT pg_relation_size(CAST(:n AS regclass))"), {"n": index_name(space)}).scalar_one()
    service.search_vector(queries[0], space.provider, space.model, k=10, server=space.server)  # warm the pool
    latencies, found = [], []
    for q in queries:
        start = time.perf_counter()
        hits = service.search_vector(q, space.provider, space.model, k=10, server=space.server)
        latencies.append(time.perf_counter() - start)
        found.append({int(i) for i in hits["embedding_id"]})
    recall = recall_at_10(engine, model, queries[:RECALL_QUERIES], found[:RECALL_QUERIES])
    ms = np.array(latencies) * 1000
    p50, p95 = float(np.percentile(ms, 50)), float(np.percentile(ms, 95))
    index = chose[0].split(": ", 1)[-1] if chose else "index existed"
    return ([row(f"similar{tag}: index build", n, build_s, None, index=f"{index}; {index_bytes / 2**20:,.0f} MB"),
             {"stage": f"similar{tag}: top-10 query", "n": n, "seconds": float(ms.sum() / 1000), "per_s": QUERIES / (ms.sum() / 1000),
              "rss_mb": None, "p50_ms": p50, "p95_ms": p95, "recall_at_10": recall,
              "first_ids": [min(f) for f in found[:CLI_CALLS]]}],
            index_bytes)


def _similar_cli(n: int, env: dict[str, str], ids: list[int]) -> list[dict[str, Any]]:
    """`studyllm similar --of ID` as a user runs it (a process: start-up, schema check, connections, the
    search), CLI_CALLS times, vs `studyllm --help` (the process's start-up alone) in the same run."""
    similar = [run_measured([STUDYLLM, "similar", "--of", str(i), "--k", "10", "--json"], env)[0] for i in ids]
    bare = [run_measured([STUDYLLM, "--help"], env)[0] for _ in ids]
    p50, peer = float(np.median(similar)), float(np.median(bare))
    return [{"stage": "similar: studyllm similar --of", "n": n, "seconds": p50, "per_s": 1 / p50, "rss_mb": None,
             "cli_p50_s": p50, "help_p50_s": peer}]


def recall_at_10(engine, model: str, queries: np.ndarray, found: list[set[int]]) -> float:  # noqa: ANN001
    """Mean share of the exact top-10 (cosine over every stored vector of the space, read back from the
    database in chunks) that the index returned."""
    unit = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    best_s = np.full((len(queries), 10), -2.0, dtype=np.float32)
    best_i = np.zeros((len(queries), 10), dtype=np.int64)
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor(name="recall") as cursor:
            cursor.itersize = 50_000
            cursor.execute("SELECT id, vector FROM embedding_vectors WHERE model = %s", (model,), binary=True)
            while rows := cursor.fetchmany(50_000):
                ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                block = np.stack([r[1].to_numpy() for r in rows]).astype(np.float32)
                block /= np.linalg.norm(block, axis=1, keepdims=True)
                s = np.concatenate([best_s, unit @ block.T], axis=1)
                i = np.concatenate([best_i, np.broadcast_to(ids, (len(queries), len(ids)))], axis=1)
                top = np.argpartition(-s, 10, axis=1)[:, :10]
                best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
        conn.rollback()
    return float(np.mean([len(set(idx.tolist()) & got) / 10 for idx, got in zip(best_i, found)]))


# -- report ---------------------------------------------------------------------------------------


WHY = {
    "similar: index build": "IVFFlat files each vector under the nearest of sqrt(N) lists (N^1.5 distances); "
                            "HNSW inserts by a graph search (N log N), slower once the graph outgrows memory",
    "similar: top-10 query": "IVFFlat scans a fixed share of sqrt(N) lists of N/lists vectors: sqrt(N) vectors",
}


def print_table(rows: list[dict[str, Any]], exps: list[dict[str, Any]], sizes_by_n: dict[int, dict[str, Any]]) -> None:
    print(f"{'stage':<34}{'N':>10}{'seconds':>10}{'items/s':>11}{'peak RSS MB':>13}  peer / notes")
    peers = {"embed": "embed: bare client loop", "pipeline: studyllm dev runs": "sweep: studyllm sweep",
             "sweep: studyllm sweep": "sweep: sklearn MiniBatchKMeans",
             "sweep: studyllm sweep, K loop": "sweep: sklearn MiniBatchKMeans"}
    by_key = {(r["stage"], r["n"]): r for r in rows}
    for r in rows:
        note = ""
        peer = by_key.get((peers.get(r["stage"], ""), r["n"]))
        if peer is not None:
            if r["stage"] == "embed":
                note = f"{r['per_s'] / peer['per_s']:.2f}x the bare loop's texts/s (goal >= 0.8x)"
            else:
                note = f"{r['seconds'] / peer['seconds']:.2f}x the time of {peer['stage']}"
        if "index" in r:
            note = r["index"]
        if "cli_p50_s" in r:
            note = (f"median of {CLI_CALLS} processes; `studyllm --help` {r['help_p50_s']:.2f} s: "
                    f"{(r['cli_p50_s'] - r['help_p50_s']) * 1000:.0f} ms beyond start-up")
        if "p50_ms" in r:
            note = f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms (goal p50 < 20 ms), recall@10 {r['recall_at_10']:.3f}"
        if r["stage"] == "cached re-run":
            note = "goal >= 200,000 texts/s"
        if "cpu_s" in r:  # CPU of the 2 cores' users: what decides the ratio when the machine is busy
            note += (f"{'; ' if note else ''}CPU s: process {r['cpu_s']:.1f}, Postgres {r['postgres_cpu_s']:.1f}, "
                     f"loopback server {r['server_cpu_s']:.1f}")
        if "runs" in r:
            note += "; " + "; ".join(f"{label}: {v['launch_to_start']} s to start + {v['start_to_end']} s, "
                                     f"{v['rss_mb']} MB, steps {v['steps']}, CPU s {v['cpu_s']}"
                                     for label, v in r["runs"].items())
        if "outside" in r:
            note += "; outside the loop: " + ", ".join(f"{key} {value:.1f} s" for key, value in r["outside"].items())
        if "best_k" in r:
            note += f"; best K {r['best_k']}"
        rss = f"{r['rss_mb']:,.0f}" if r.get("rss_mb") else "-"
        print(f"{r['stage']:<34}{r['n']:>10,}{r['seconds']:>10.2f}{r['per_s']:>11,.0f}{rss:>13}  {note}")
    print()
    print("database growth per million vectors (MB): table (heap+TOAST), b-tree indexes, HNSW index, raw_calls, "
          "group_embeddings (the runs' embedding sets: the first run's items; the re-run references them), total")
    for n, s in sizes_by_n.items():
        per = {k: v / n * 1e6 / 2**20 for k, v in s.items()}
        print(f"  N={n:>9,}: table {per['table']:,.0f}  b-tree {per['indexes'] - per['hnsw_index']:,.0f}  HNSW {per['hnsw_index']:,.0f}  "
              f"raw_calls {per['raw_calls']:,.0f}  group_embeddings {per['group_embeddings']:,.0f}  total {per['database']:,.0f}")
    print()
    print_growth(exps, WHY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ns", default="50000,200000,1000000", help="comma-separated N values")
    parser.add_argument("--max-n", type=int, default=1_000_000, help="skip N above this (smaller machines)")
    parser.add_argument("--stages", default="embed,sweep,pipeline,similar",
                        help="which stages to run (embed includes the cached re-run and the size)")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the loopback server adds per request")
    parser.add_argument("--kmeans-max-n", type=int, default=200_000,
                        help="scikit-learn's full KMeans peer only up to this N (it is the slow one)")
    parser.add_argument("--similar-random", action="store_true",
                        help="similar stage: also on the embed stage's uniformly random vectors (HNSW's worst case)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON to PATH")
    args = parser.parse_args()
    ns = [n for n in (int(v) for v in args.ns.split(",")) if n <= args.max_n]
    stages = set(args.stages.split(","))
    rows: list[dict[str, Any]] = []
    sizes_by_n: dict[int, dict[str, Any]] = {}
    print(f"loopback server: {args.latency * 1000:.0f} ms per request, {DIM}-d base64 vectors; batch {BATCH}, "
          f"concurrency {CONCURRENCY}; sweep K={K_VALUES[0]}..{K_VALUES[-1]}, {RESTARTS} restarts, PCA {PCA_DIM}",
          flush=True)
    with scratch_database() as (engine, url), \
            stub_server_process("--latency", str(args.latency), "--dim", str(DIM), "--vectors", "blobs") as (base, _admin), \
            tempfile.TemporaryDirectory(prefix="sl-bench-scale-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)  # the texts files (70 MB at a million) go when the run ends, however it ends
        env = {**os.environ, "STUDYLLM_DATABASE_URL": url, "OPENAI_COMPATIBLE_BASE_URL": base}
        for n in ns:
            path = work / f"texts-{n}.txt"
            write_texts(path, n)
            model = f"bench-scale-{n}"
            before = sizes(engine)
            done = len(rows)
            if "embed" in stages:
                rows += embed_stages(path, n, model, env, base)
            if "embed" in stages:
                after = sizes(engine)
                sizes_by_n[n] = {**{k: after[k] - before[k] for k in after}, "hnsw_index": 0}
            if "similar" in stages:
                sim_rows, index = similar_stage(engine, n, env, work,
                                                random_model=model if args.similar_random and "embed" in stages else None)
                rows += sim_rows
                if n in sizes_by_n:  # the clustered space's index: about the size the embed stage's space would get
                    sizes_by_n[n]["hnsw_index"] = index["hnsw_index"]
                    sizes_by_n[n]["indexes"] += index["hnsw_index"]
                    sizes_by_n[n]["database"] += index["hnsw_index"]
            if stages & {"sweep", "pipeline"}:  # the CLI sweep is the pipeline's peer
                settle(engine)
                rows += sweep_stage(path, n, model, env, base, K_VALUES, args.kmeans_max_n)
            if "pipeline" in stages:
                rows += pipeline_stage(path, n, model, env, base, K_VALUES)
            for r in rows[done:]:
                print(f"  N={n:,} {r['stage']}: {r['seconds']:.2f} s", file=sys.stderr, flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps({"rows": rows, "sizes": sizes_by_n}, indent=1))
    exps = exponents(rows, ns)
    print_table(rows, exps, sizes_by_n)
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "sizes": sizes_by_n, "exponents": exps,
                                               "latency_s": args.latency, "ks": K_VALUES}, indent=1))


if __name__ == "__main__":
    main()
