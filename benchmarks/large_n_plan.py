"""What the sampled plan costs just past its threshold: a sweep of N items with the default `large_n` (the fit
sample's 20,000: restarts fit on a 20,000 sample and refined on every row, K criteria on a 10,000 sample)
against every row everywhere (`large_n` above N, the default until 2026-12-02: 100,000).

Run: nice -n 10 python benchmarks/large_n_plan.py [--n 50000] [--sets k10,k30] [--seeds 0,1,2]

On von Mises-Fisher blobs on the sphere (k_selection.py's generator: sibling blobs under shared topics, unequal
sizes), PCA 50 as the sweep projects, `run_sweep` over K* +- max(5, K*/5) with each setting, per seed: the K the
rule chose, the interval it states, NMI at the chosen K and at the true K*, and the seconds (wall and CPU, one
process). The sampled plan should choose the same K (within 5%) at no more than a point of NMI, in a fraction of
the time.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from k_selection import SYNTHETIC, synthetic  # noqa: E402
from sklearn.metrics import normalized_mutual_info_score  # noqa: E402

from studyllm_core.algorithms import SweepConfig, run_sweep  # noqa: E402

# the shapes of k_selection.py's syn_k10 and syn_k30, at --n items
SETS = {name: {key: value for key, value in SYNTHETIC[f"syn_{name}"].items() if key != "n"} for name in ("k10", "k30")}
EVERY_ROW = 10**9  # a large_n above any N: every row everywhere


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--sets", default="k10,k30")
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    default = SweepConfig().large_n
    print(f"N={args.n:,}: the default plan (large_n {default:,}) against every row (large_n above N)")
    print(f"{'set':5} {'seed':>4} {'plan':>10} {'K':>3} {'interval':>10} {'NMI@K':>7} {'NMI@K*':>7} {'wall s':>7} {'CPU s':>7}")
    for name in args.sets.split(","):
        shape = SETS[name]
        x, labels = synthetic(n=args.n, **shape)
        true_k = shape["k"]
        for seed in (int(s) for s in args.seeds.split(",")):
            for plan, large_n in (("every row", EVERY_ROW), ("default", default)):
                span = max(5, true_k // 5)
                config = SweepConfig(k_min=max(2, true_k - span), k_max=true_k + span, seed=seed, metric="cosine",
                                     pca_dim=50, large_n=large_n)
                wall, cpu = time.perf_counter(), time.process_time()
                result = run_sweep(x, None, config, labels=labels)
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                by_k = {item.k: item.clustering.labels for item in result.per_k}
                at_best = normalized_mutual_info_score(labels, by_k[result.best_k]) if result.best_k else float("nan")
                interval = (result.choice.interval if result.choice else None) or "-"
                print(f"{name:5} {seed:>4} {plan:>10} {result.best_k or '-':>3} {str(interval):>10} {at_best:7.4f} "
                      f"{normalized_mutual_info_score(labels, by_k[true_k]):7.4f} {wall:7.1f} {cpu:7.1f}", flush=True)


if __name__ == "__main__":
    main()
