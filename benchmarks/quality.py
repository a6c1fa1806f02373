"""Clustering quality on labelled short-text sets: k-means vs k-LLMmeans with extractive summaries.

Run: python benchmarks/quality.py [--seeds 5] [--pca-dim 50] [--llm-rounds 2] [--samples-per-cluster 10]
                                  [--sets stackoverflow search_snippets] [--limit N]

For each set (/work/shared/data, TSV without header: label<TAB>text) the texts are embedded once with
the `local` provider (packaged all-MiniLM-L6-v2, offline) through EmbeddingService into a scratch
database; every later run reads them from the cache. Each set is then clustered at its true K by
SweepService (the same code as `studyllm sweep`: PCA, spherical k-means, one restart per seed):

- k-means: k_llmmeans without summaries;
- k-LLMmeans: the same seed, with the `extractive` summariser through SummarizationService (every
  summary call recorded as a raw call) and the summaries embedded through the same cache.

Prints ACC (Hungarian), NMI and ARI as mean +- std over the seeds per method and set, the paired
per-seed NMI differences, whether k-LLMmeans >= k-means on NMI, and the published reference point.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from _db import scratch_database
from studyllm_core.algorithms import SweepConfig
from studyllm_core.providers.registry import create_provider
from studyllm_core.services.capture.embedding import EmbeddingService
from studyllm_core.services.inputs import read_texts
from studyllm_core.services.sweep.service import SweepService

DATA = Path("/work/shared/data")
SETS = {"stackoverflow": 20, "search_snippets": 8}  # name -> true K
REFERENCE = "TF-IDF + k-means on StackOverflow: ACC 20.31%, NMI 15.64% (mean of 500 runs, Xu et al. 2015)"
METRICS = ("acc", "nmi", "ari")


def load(name: str, limit: int | None) -> tuple[list[str], list[str]]:
    table = read_texts(DATA / f"{name}.tsv", text_column=1, label_column=0, header=False)
    texts, labels = table.texts, table.labels or []
    if limit:
        keep = np.random.default_rng(0).permutation(len(texts))[:limit]
        texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
    return texts, labels


def run_method(service: SweepService, texts, labels, k: int, seed: int, args, out: Path, llm: bool) -> tuple[dict, dict]:
    config = SweepConfig(
        k_min=k, k_max=k, n_restarts=1, pca_dim=args.pca_dim, metric="cosine", seed=seed,
        llm_rounds=args.llm_rounds if llm else 0, samples_per_cluster=args.samples_per_cluster,
        summarize_restarts="best",
    )
    outcome = service.run(texts, config, out, labels=labels)
    return outcome.result.per_k[0].scores.label_metrics, outcome.report["counts"]


def fmt(values: list[float]) -> str:
    return f"{100 * np.mean(values):5.2f} +- {100 * np.std(values):4.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--pca-dim", type=int, default=50)
    parser.add_argument("--llm-rounds", type=int, default=2)
    parser.add_argument("--samples-per-cluster", type=int, default=10)
    parser.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    parser.add_argument("--limit", type=int, help="use a random subset of N texts per set (quick look)")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"

    results: dict[tuple[str, str], dict[str, list[float]]] = {}
    with scratch_database() as (engine, _), tempfile.TemporaryDirectory() as scratch:
        embedder = EmbeddingService(engine, create_provider("local"), provider_name="local", model="all-MiniLM-L6-v2")
        kmeans, kllm = SweepService(embedder), SweepService(embedder, "extractive")
        try:
            for name in args.sets:
                texts, labels = load(name, args.limit)
                k = SETS[name]
                started = time.perf_counter()
                embedded = embedder.embed(texts)
                print(f"{name}: {len(texts):,} texts, K={k}; embedded {embedded.embedded:,} "
                      f"({embedded.cached:,} cached) in {time.perf_counter() - started:.1f} s", flush=True)
                for method, service, llm in (("k-means", kmeans, False), ("k-LLMmeans", kllm, True)):
                    scores = results.setdefault((name, method), {m: [] for m in METRICS})
                    started = time.perf_counter()
                    calls = 0
                    for seed in range(args.seeds):
                        metrics, counts = run_method(service, texts, labels, k, seed, args, Path(scratch) / name, llm)
                        calls += counts["summarize_calls"]
                        for m in METRICS:
                            scores[m].append(metrics[m])
                    print(f"  {method:<10} {args.seeds} seeds in {time.perf_counter() - started:5.1f} s, "
                          f"summary calls {calls}", flush=True)
        finally:
            kmeans.close()
            kllm.close()

    print()
    print(f"Settings: local all-MiniLM-L6-v2 (384-d) -> PCA {args.pca_dim} -> spherical k-means (cosine), true K, "
          f"one restart per seed, seeds 0..{args.seeds - 1}; k-LLMmeans: {args.llm_rounds} rounds x 5 Lloyd "
          f"iterations, {args.samples_per_cluster} k-means++-sampled members per summary, then Lloyd to convergence.")
    print("Summaries: the offline `extractive` provider (most central TF-IDF sentence) through SummarizationService "
          "(each call recorded as a raw call); summary texts embedded through the same EmbeddingService cache.")
    print()
    print(f"{'set':<16} {'method':<11} {'ACC %':>15} {'NMI %':>15} {'ARI %':>15}")
    for name in args.sets:
        for method in ("k-means", "k-LLMmeans"):
            s = results[(name, method)]
            print(f"{name:<16} {method:<11} {fmt(s['acc']):>15} {fmt(s['nmi']):>15} {fmt(s['ari']):>15}")
    print()
    for name in args.sets:
        base, llm = results[(name, "k-means")]["nmi"], results[(name, "k-LLMmeans")]["nmi"]
        diffs = [100 * (b - a) for a, b in zip(base, llm)]
        verdict = "yes" if np.mean(llm) >= np.mean(base) else "no"
        print(f"{name}: k-LLMmeans >= k-means on NMI: {verdict} (mean {np.mean(diffs):+.2f} points; "
              f"per seed {', '.join(f'{d:+.2f}' for d in diffs)})")
    print()
    print(f"Published reference point: {REFERENCE}.")


if __name__ == "__main__":
    main()
