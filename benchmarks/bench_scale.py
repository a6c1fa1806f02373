"""The whole path at scale: N = 50,000, 200,000 and 1,000,000 unique short texts, and how each stage grows with N.

Run: nice -n 10 python benchmarks/bench_scale.py [--ns 50000,200000,1000000] [--max-n 1000000] [--json]

One fresh embedded database and one loopback OpenAI-compatible server (its own process, base64 vectors of
384 dimensions, --latency seconds per request) serve every N; each N embeds its own texts under its own model
name, so each N is its own vector space with its own HNSW index. Per N, each with its peer from the same run:

- embed: `studyllm embed` (first run) vs a bare AsyncOpenAI loop process over the same batches
  (_bare_embed_loop.py; the SDK asks for base64 too);
- cached: `studyllm embed` again (every text served from the cache);
- sweep: `_scale_sweep.sweep_stage`:
  `studyllm sweep` over the K values, 3 restarts, PCA 50, vs scikit-learn MiniBatchKMeans / KMeans on the same
  projected vectors;
- pipeline: the user's path (`studyllm dev` on the same database; prepare_dataset of the same file, then one
  ranged sweep_k run over the same K values, launched as the Launchpad does; each timed from launch to its end)
  vs the CLI sweep of the same run (its peer: the sweep stage runs whenever the pipeline stage does);
- similar: the HNSW build of the space and top-10 p50/p95 of `nearest` (what `studyllm similar` runs; the
  query's embedding excluded), with recall@10 against exact search;
- size: what the database grew by for these vectors (table, b-tree indexes, HNSW index), per million vectors.

Wall times include each process's start. Then the growth exponent b of each stage between consecutive N
(seconds ∝ N^b); b > 1.1 is flagged. This machine is shared: read ratios, not absolute figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from _db import scratch_database
from _scale_sweep import sweep_stage
from studyllm_core.testing import stub_server_process
from studyllm_core.testing.openai_server import stub_embeddings

STUDYLLM = str(Path(sys.executable).with_name("studyllm"))
HERE = Path(__file__).parent
BATCH, CONCURRENCY, DIM = 256, 8, 384
K_VALUES = list(range(10, 20))  # `studyllm sweep` clusters every K of --k-min..--k-max: 10 values
RESTARTS, PCA_DIM = 3, 50
QUERIES, RECALL_QUERIES = 200, 30


# -- processes ------------------------------------------------------------------------------------


def run_measured(args: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (bytes: the process and its children, sampled every 20 ms) and stdout of one
    process, start to exit. (wait4's ru_maxrss would count the bench's own RSS, inherited at fork.)"""
    import psutil

    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=err, text=True)
        peak = 0
        watched = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                peak = max(peak, watched.memory_info().rss + sum(c.memory_info().rss for c in watched.children(True)))
            except psutil.Error:
                pass
            time.sleep(0.02)
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(Path(a).name for a in args[:3])} failed ({proc.returncode}): {stderr[-3000:]}")
    return seconds, peak, stdout


def row(stage: str, n: int, seconds: float, rss: int | None, items: int | None = None, **extra: Any) -> dict[str, Any]:
    return {"stage": stage, "n": n, "seconds": seconds, "per_s": (items if items is not None else n) / seconds,
            "rss_mb": rss / 2**20 if rss else None, **extra}


# -- stages ---------------------------------------------------------------------------------------


def write_texts(path: Path, n: int) -> None:
    with path.open("w") as handle:
        for start in range(0, n, 100_000):
            handle.write("".join(f"scale {n} text {i}: a short reply about topic {i * 7919 % 1009}\n"
                                 for i in range(start, min(n, start + 100_000))))


def embed_stages(path: Path, n: int, model: str, env: dict[str, str], base: str) -> list[dict[str, Any]]:
    cli = [STUDYLLM, "embed", str(path), "--provider", "openai-compatible", "--model", model,
           "--batch-size", str(BATCH), "--concurrency", str(CONCURRENCY), "--json"]
    rows = []
    seconds, rss, out = run_measured(cli, env)
    first = json.loads(out)
    assert first["embedded"] == n, first
    rows.append(row("embed", n, seconds, rss))
    bare = [sys.executable, str(HERE / "_bare_embed_loop.py"), base, str(path), str(BATCH), str(CONCURRENCY)]
    seconds, rss, _ = run_measured(bare, env)
    rows.append(row("embed: bare client loop", n, seconds, rss))
    seconds, rss, out = run_measured(cli, env)
    again = json.loads(out)
    assert again["cached"] == n and again["api_requests"] == 0, again
    rows.append(row("cached re-run", n, seconds, rss))
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
        for label, job, tags, config in launches:
            before, submitted = dev.pids(), time.time()
            run_id = launch_run(graphql, job, tags, config)
            runs[label] = follow(graphql, dev, submitted, lambda run_id=run_id: run_id, before, until=None, timeout=3600)
            steps = graphql(STEPS, {"id": run_id})["runOrError"]["stepStats"]
            runs[label]["steps"] = {s["stepKey"]: round(s["endTime"] - s["startTime"], 1) for s in steps if s["endTime"]}
        graphql.close()
    total = sum(r["total"] for r in runs.values())
    return [row("pipeline: studyllm dev runs", n, total, max(r["rss"] for r in runs.values()),
                runs={label: {"launch_to_start": round(r["to_start"], 1), "start_to_end": round(r["start_to_results"], 1),
                              "rss_mb": round(r["rss"] / 2**20), "steps": r["steps"]} for label, r in runs.items()})]


def sizes(engine) -> dict[str, int]:  # noqa: ANN001
    from sqlalchemy import text

    sql = text("SELECT pg_table_size('embedding_vectors'), pg_indexes_size('embedding_vectors'), "
               "pg_total_relation_size('raw_calls'), pg_total_relation_size('group_embeddings'), pg_database_size(current_database())")
    with engine.connect() as conn:
        table, indexes, calls, members, database = conn.execute(sql).one()
    return {"table": table, "indexes": indexes, "raw_calls": calls, "group_embeddings": members, "database": database}


def similar_stage(engine, n: int, model: str, texts_path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # noqa: ANN001
    from sqlalchemy import text

    from studyllm_core.db.vector_search import VectorSearch, hnsw_index_name
    from studyllm_core.services.study.similarity import SimilarityService

    service = SimilarityService(engine, ddl_engine=engine, notice=lambda msg: print(f"  {msg}", file=sys.stderr))
    [space] = [s for s in service.vectors.spaces() if s.model == model]
    start = time.perf_counter()
    service.ensure_index(space.provider, space.model, space.dimension, space.server)
    build_s = time.perf_counter() - start
    with engine.connect() as conn:
        index_bytes = conn.execute(text("SELECT pg_relation_size(CAST(:n AS regclass))"), {"n": hnsw_index_name(space)}).scalar_one()
    search = VectorSearch(engine)
    queries = stub_embeddings(model, [f"query {i} about topic {i % 1009}" for i in range(QUERIES)], DIM).astype(np.float32)
    search.nearest(queries[0], space, k=10)  # warm the connection pool and the index's pages
    latencies, found = [], []
    for q in queries:
        start = time.perf_counter()
        hits = search.nearest(q, space, k=10)
        latencies.append(time.perf_counter() - start)
        found.append({h[2] for h in hits})  # stored texts: these are already normalised
    recall = recall_at_10(model, texts_path, queries[:RECALL_QUERIES], found[:RECALL_QUERIES])
    ms = np.array(latencies) * 1000
    p50, p95 = float(np.percentile(ms, 50)), float(np.percentile(ms, 95))
    return ([row("similar: HNSW build", n, build_s, None),
             {"stage": "similar: top-10 query", "n": n, "seconds": float(ms.sum() / 1000), "per_s": QUERIES / (ms.sum() / 1000),
              "rss_mb": None, "p50_ms": p50, "p95_ms": p95, "recall_at_10": recall}],
            {"hnsw_index": index_bytes})


def recall_at_10(model: str, path: Path, queries: np.ndarray, found: list[set[str]]) -> float:
    """Mean share of the exact top-10 (cosine, over every stored vector of the space) that the index returned."""
    texts = path.read_text().splitlines()
    best_s = np.full((len(queries), 10), -2.0, dtype=np.float32)
    best_i = np.zeros((len(queries), 10), dtype=np.int64)
    for start in range(0, len(texts), 50_000):
        block = stub_embeddings(model, texts[start : start + 50_000], DIM).astype(np.float32)
        sims = queries @ block.T
        s = np.concatenate([best_s, sims], axis=1)
        i = np.concatenate([best_i, np.arange(start, start + block.shape[0])[None, :].repeat(len(queries), 0)], axis=1)
        top = np.argsort(-s, axis=1)[:, :10]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    shares = [len({texts[j] for j in idx} & got) / 10 for idx, got in zip(best_i, found)]
    return float(np.mean(shares))


# -- report ---------------------------------------------------------------------------------------


def exponents(rows: list[dict[str, Any]], ns: list[int]) -> list[dict[str, Any]]:
    """b of each stage between consecutive N: seconds ∝ N^b."""
    out = []
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    for stage in stages:
        by_n = {r["n"]: r["seconds"] for r in rows if r["stage"] == stage}
        for a, b in zip(ns, ns[1:]):
            if a in by_n and b in by_n and by_n[a] > 0:
                exp = math.log(by_n[b] / by_n[a]) / math.log(b / a)
                out.append({"stage": stage, "from": a, "to": b, "b": exp, "flag": exp > 1.1})
    return out


WHY = {
    "similar: HNSW build": "an HNSW insert searches the graph built so far (O(log N) each, so N log N), and the graph "
                           "outgrows maintenance_work_mem or the page cache: pages are written and read back",
    "similar: top-10 query": "an HNSW search visits O(log N) nodes; a query above ~1 ms is mostly planning and round trip",
}


def print_table(rows: list[dict[str, Any]], exps: list[dict[str, Any]], sizes_by_n: dict[int, dict[str, Any]]) -> None:
    print(f"{'stage':<34}{'N':>10}{'seconds':>10}{'items/s':>11}{'peak RSS MB':>13}  peer / notes")
    peers = {"embed": "embed: bare client loop", "pipeline: studyllm dev runs": "sweep: studyllm sweep",
             "sweep: studyllm sweep": "sweep: sklearn MiniBatchKMeans"}
    by_key = {(r["stage"], r["n"]): r for r in rows}
    for r in rows:
        note = ""
        peer = by_key.get((peers.get(r["stage"], ""), r["n"]))
        if peer is not None:
            if r["stage"] == "embed":
                note = f"{r['per_s'] / peer['per_s']:.2f}x the bare loop's texts/s (goal >= 0.8x)"
            else:
                note = f"{r['seconds'] / peer['seconds']:.2f}x the time of {peer['stage']}"
        if "p50_ms" in r:
            note = f"p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms (goal p50 < 20 ms), recall@10 {r['recall_at_10']:.3f}"
        if r["stage"] == "cached re-run":
            note = "goal >= 200,000 texts/s"
        if "runs" in r:
            note += "; " + "; ".join(f"{label}: {v['launch_to_start']} s to start + {v['start_to_end']} s, "
                                     f"{v['rss_mb']} MB, steps {v['steps']}" for label, v in r["runs"].items())
        if "best_k" in r:
            note += f"; best K {r['best_k']}"
        rss = f"{r['rss_mb']:,.0f}" if r.get("rss_mb") else "-"
        print(f"{r['stage']:<34}{r['n']:>10,}{r['seconds']:>10.2f}{r['per_s']:>11,.0f}{rss:>13}  {note}")
    print()
    print("database growth per million vectors (MB): table (heap+TOAST), b-tree indexes, HNSW index, raw_calls, "
          "group_embeddings (both embed runs' items), total")
    for n, s in sizes_by_n.items():
        per = {k: v / n * 1e6 / 2**20 for k, v in s.items()}
        print(f"  N={n:>9,}: table {per['table']:,.0f}  b-tree {per['indexes'] - per['hnsw_index']:,.0f}  HNSW {per['hnsw_index']:,.0f}  "
              f"raw_calls {per['raw_calls']:,.0f}  group_embeddings {per['group_embeddings']:,.0f}  total {per['database']:,.0f}")
    print()
    print("growth exponent b (seconds ∝ N^b) between consecutive N; * where b > 1.1")
    for e in exps:
        flag = f"  * {WHY.get(e['stage'], 'see the stage')}" if e["flag"] else ""
        print(f"  {e['stage']:<34}{e['from']:>9,} -> {e['to']:>9,}: b = {e['b']:.2f}{flag}")


@contextmanager
def _removed_after(folder: Path) -> Iterator[None]:
    """The texts files (70 MB at a million) go when the run ends, however it ends."""
    try:
        yield
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ns", default="50000,200000,1000000", help="comma-separated N values")
    parser.add_argument("--max-n", type=int, default=1_000_000, help="skip N above this (smaller machines)")
    parser.add_argument("--stages", default="embed,sweep,pipeline,similar",
                        help="which stages to run (embed includes the cached re-run and the size)")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds the loopback server adds per request")
    parser.add_argument("--kmeans-max-n", type=int, default=200_000,
                        help="scikit-learn's full KMeans peer only up to this N (it is the slow one)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON to PATH")
    args = parser.parse_args()
    ns = [n for n in (int(v) for v in args.ns.split(",")) if n <= args.max_n]
    stages = set(args.stages.split(","))
    work = Path(tempfile.mkdtemp(prefix="sl-bench-scale-"))
    rows: list[dict[str, Any]] = []
    sizes_by_n: dict[int, dict[str, Any]] = {}
    print(f"loopback server: {args.latency * 1000:.0f} ms per request, {DIM}-d base64 vectors; batch {BATCH}, "
          f"concurrency {CONCURRENCY}; sweep K={K_VALUES[0]}..{K_VALUES[-1]}, {RESTARTS} restarts, PCA {PCA_DIM}",
          flush=True)
    with scratch_database() as (engine, url), \
            stub_server_process("--latency", str(args.latency), "--dim", str(DIM)) as (base, _admin), \
            _removed_after(work):
        env = {**os.environ, "STUDYLLM_DATABASE_URL": url, "OPENAI_COMPATIBLE_BASE_URL": base}
        for n in ns:
            path = work / f"texts-{n}.txt"
            write_texts(path, n)
            model = f"bench-scale-{n}"
            before = sizes(engine)
            done = len(rows)
            if "embed" in stages:
                rows += embed_stages(path, n, model, env, base)
            if "similar" in stages:
                sim_rows, index = similar_stage(engine, n, model, path)
                rows += sim_rows
            if "embed" in stages:
                after = sizes(engine)
                sizes_by_n[n] = {**{k: after[k] - before[k] for k in after}, "hnsw_index": index["hnsw_index"] if "similar" in stages else 0}
            if stages & {"sweep", "pipeline"}:  # the CLI sweep is the pipeline's peer
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
