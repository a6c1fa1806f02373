"""Why a large-N sweep runs on one BLAS thread (`sweep.one_blas_thread`): the refinement over all rows on 1 vs 2.

Run: python benchmarks/bench_blas_threads.py [--rows 1000000] [--k 15] [--repeats 5]

On N unit rows of 50 dimensions (blobs, as a PCA-50 projection of short texts), a K-means fit on a 20,000-row
sample is refined on every row with `kmeans.refine_costs`, the pass a large sweep runs per K (and its second pass
again): up to 10 Lloyd passes, stopping as the sweep does (refine_tol 1e-4). The same refinement is timed under
`threadpool_limits(1)` and `threadpool_limits(2)`, alternated --repeats times; printed are the medians of the
wall time and of the process's CPU time (every thread's), and the ratio of each, one thread against two.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    z = blobs(args.rows, args.k)
    sample = z[np.random.default_rng(1).choice(args.rows, 20_000, replace=False)]
    with threadpool_limits(1, user_api="blas"):
        fit = k_llmmeans(sample, None, args.k, seed=0)
    rows = refine_rows(z, fit.metric)
    times: dict[int, list[tuple[float, float]]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for threads in (2, 1):
            with threadpool_limits(threads, user_api="blas"):
                wall, cpu = time.perf_counter(), time.process_time()
                refined, _ = refine_costs(fit, rows, max_iter=10, rel_tol=1e-4)
                times[threads].append((time.perf_counter() - wall, time.process_time() - cpu))
    print(f"refine_costs of K={args.k} on {args.rows:,} x 50 rows ({refined.n_iter - fit.n_iter} passes), "
          f"median of {args.repeats}:")
    median = {t: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for t, v in times.items()}
    for threads, (wall, cpu) in median.items():
        print(f"  {threads} BLAS thread{'s' if threads > 1 else ''}: {wall:.2f} s wall, {cpu:.2f} CPU s")
    print(f"  one thread vs two: {median[1][0] / median[2][0]:.2f}x the wall time, "
          f"{median[1][1] / median[2][1]:.2f}x the CPU time")


if __name__ == "__main__":
    main()
