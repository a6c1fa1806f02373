"""Why a sweep runs on one BLAS thread (`sweep.one_blas_thread`): its work on 1 thread vs 2, alone and beside a busy core.

Run: python benchmarks/bench_blas_threads.py [--rows 1000000] [--k 15] [--repeats 5]
     python benchmarks/bench_blas_threads.py --sweep [--rows 20000] [--ks 13-17] [--repeats 3] [--busy]

Default: on N unit rows of 50 dimensions (blobs, as a PCA-50 projection of short texts), a K-means fit on a
20,000-row sample is refined on every row with `kmeans.refine_costs`, the pass a large sweep runs per K (and its
second pass again): up to 10 Lloyd passes, stopping as the sweep does (refine_tol 1e-4).
--sweep: the per-K work of a sweep at N <= large_n (every row everywhere; large_n is 20,000, the fit sample, so
that is also the work on the sample above it): `cluster_restarts` (3 restarts, then breathing k-means on the
chosen one) and `k_criteria` (subsampling stability, BIC) for each K of --ks. The figures in the README and
docs/architecture.md were taken with --rows 50000, when large_n was 100,000.
--busy: a process spins on one core meanwhile, as Postgres, Dagster's services or another job do on a shared
2-core machine.
The same work is timed under `threadpool_limits(1)` and `threadpool_limits(2)`, alternated --repeats times;
printed are the medians of the wall time and of the process's CPU time (every thread's), and the ratio of each,
one thread against two, with the objectives (the same on both: the threads change the speed, not the result).
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time

import numpy as np
from threadpoolctl import threadpool_limits

from studyllm_core.algorithms.kmeans import k_llmmeans, refine_costs, refine_rows


def blobs(n: int, k: int, dim: int = 50, seed: int = 0) -> np.ndarray:
    """n float32 unit rows around k random directions."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, dim)).astype(np.float32)
    x = centres[rng.integers(0, k, n)] + 1.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def spin() -> None:
    while True:
        pass


def timed(work, repeats: int) -> dict[int, tuple[float, float, object]]:  # noqa: ANN001 - a callable
    """`work()` under one and two BLAS threads, alternated `repeats` times: thread count -> the medians of
    the wall and CPU seconds, and the last result."""
    times: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    results: dict[int, object] = {}
    for _ in range(repeats):
        for threads in (2, 1):
            with threadpool_limits(threads, user_api="blas"):
                wall, cpu = time.perf_counter(), time.process_time()
                results[threads] = work()
                times[threads].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {t: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v), results[t]) for t, v in times.items()}


def report(median: dict[int, tuple[float, float, object]]) -> None:
    for threads, (wall, cpu, _) in median.items():
        print(f"  {threads} BLAS thread{'s' if threads > 1 else ''}: {wall:.2f} s wall, {cpu:.2f} CPU s")
    print(f"  one thread vs two: {median[1][0] / median[2][0]:.2f}x the wall time, "
          f"{median[1][1] / median[2][1]:.2f}x the CPU time")


def sweep_work(args: argparse.Namespace) -> None:
    """A small-N sweep's per-K work (restarts + breathing, K criteria) over --ks, one thread vs two."""
    from studyllm_core.algorithms.sweep import SweepConfig, cluster_restarts, k_criteria

    low, high = (int(v) for v in args.ks.split("-"))
    z = blobs(args.rows, args.k)
    config = SweepConfig(k_min=low, k_max=high, n_restarts=3, pca_dim=None)

    def work() -> list[float]:
        objectives = []
        for k in range(low, high + 1):
            chosen = cluster_restarts(z, None, k, config).chosen
            k_criteria(z, chosen, config.seed)
            objectives.append(round(float(chosen.objective), 3))
        return objectives

    median = timed(work, args.repeats)
    print(f"a sweep's per-K work at N={args.rows:,} x 50 (all rows), K={low}..{high}, 3 restarts + breathing + "
          f"criteria, median of {args.repeats}{', one core busy' if args.busy else ''}:")
    report(median)
    print(f"  objectives per K, one thread: {median[1][2]}; two: {median[2][2]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="rows (default 1,000,000; with --sweep 20,000)")
    parser.add_argument("--k", type=int, default=15, help="blobs (and the refinement's K)")
    parser.add_argument("--repeats", type=int, default=None, help="alternations (default 5; with --sweep 3)")
    parser.add_argument("--sweep", action="store_true", help="a small-N sweep's per-K work instead of the refinement")
    parser.add_argument("--ks", default="13-17", help="--sweep: the K range, LOW-HIGH")
    parser.add_argument("--busy", action="store_true", help="a process spins on one core meanwhile")
    args = parser.parse_args()
    args.rows = args.rows or (20_000 if args.sweep else 1_000_000)
    args.repeats = args.repeats or (3 if args.sweep else 5)
    spinner = multiprocessing.Process(target=spin, daemon=True) if args.busy else None
    if spinner is not None:
        spinner.start()
    try:
        sweep_work(args) if args.sweep else refinement(args)
    finally:
        if spinner is not None:
            spinner.terminate()


def refinement(args: argparse.Namespace) -> None:
    """The refinement over all rows a large sweep runs per K, one thread vs two."""
    z = blobs(args.rows, args.k)
    sample = z[np.random.default_rng(1).choice(args.rows, 20_000, replace=False)]
    with threadpool_limits(1, user_api="blas"):
        fit = k_llmmeans(sample, None, args.k, seed=0)
    rows = refine_rows(z, fit.metric)
    median = timed(lambda: refine_costs(fit, rows, max_iter=10, rel_tol=1e-4)[0], args.repeats)
    refined = median[1][2]
    print(f"refine_costs of K={args.k} on {args.rows:,} x 50 rows ({refined.n_iter - fit.n_iter} passes), "
          f"median of {args.repeats}{', one core busy' if args.busy else ''}:")
    report(median)


if __name__ == "__main__":
    main()
