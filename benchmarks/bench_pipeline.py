"""The Dagster pipeline's overhead: `studyllm demo` against the same sweep through `studyllm sweep`.

Run: python benchmarks/bench_pipeline.py [--pairs 3]

Both run the bundled demo corpus (450 texts, 10 topics) with local MiniLM embeddings, PCA to 50,
k-LLMmeans with the extractive summariser (2 rounds), K = 6..14, 5 restarts, seed 0, each in a
fresh STUDYLLM_HOME (so each starts its own embedded Postgres, loads the model and embeds every
text), one after the other. This machine is shared and a single pair varies by +-0.15 in the
ratio, so --pairs pairs run back to back and the median ratio is the figure. Printed: wall time
of each process per pair, each pair's ratio, the median (goal: demo <= 1.5x sweep), and the best
K and NMI each found.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from studyllm_core.services.datasets import demo_corpus_path

STUDYLLM = str(Path(sys.executable).with_name("studyllm"))


def timed(args: list[str], home: Path) -> tuple[float, dict]:
    env = {k: v for k, v in os.environ.items() if k != "STUDYLLM_DATABASE_URL"}
    env.update(STUDYLLM_HOME=str(home), HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    result = subprocess.run([STUDYLLM, *args, "--json"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args[:1])} failed: {result.stderr[-2000:]}")
    return seconds, json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="demo/sweep pairs to run (the median ratio is reported)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sl-bench-pipeline-"))
    print("demo corpus: 450 texts, 10 topics; K=6..14, 5 restarts, PCA 50, k-LLMmeans (extractive, 2 rounds)")
    print(f"{'pair':<6}{'run':<44}{'seconds':>9}{'best K':>8}{'NMI':>8}")
    ratios = []
    for pair in range(1, args.pairs + 1):
        demo_s, demo = timed(["demo", "--k-min", "6", "--k-max", "14"], work / f"demo-home-{pair}")
        sweep_s, sweep = timed(
            ["sweep", str(demo_corpus_path()), "--label-column", "label", "--embed-provider", "local",
             "--embed-model", "all-MiniLM-L6-v2", "--k-min", "6", "--k-max", "14", "--restarts", "5", "--pca-dim", "50",
             "--summarizer", "extractive", "--llm-rounds", "2", "--seed", "0", "--out", str(work / f"sweep-out-{pair}")],
            work / f"sweep-home-{pair}",
        )
        demo_nmi = (demo["best"]["label_metrics"] or {}).get("nmi", float("nan"))
        sweep_best = next((row for row in sweep["per_k"] if row["k"] == sweep["best_k"]), {})
        sweep_nmi = sweep_best.get("nmi")
        print(f"{pair:<6}{'studyllm demo (Dagster: 11 runs, all assets)':<44}{demo_s:>9.1f}{demo['best_k']:>8}{demo_nmi:>8.3f}")
        print(f"{pair:<6}{'studyllm sweep (no Dagster)':<44}{sweep_s:>9.1f}{sweep.get('best_k'):>8}"
              f"{(sweep_nmi if sweep_nmi is not None else float('nan')):>8.3f}   ratio {demo_s / sweep_s:.2f}x", flush=True)
        ratios.append(demo_s / sweep_s)
    print(f"demo / sweep: {statistics.median(ratios):.2f}x median of {len(ratios)} pairs "
          f"({', '.join(f'{r:.2f}' for r in ratios)})  (goal <= 1.5x)")


if __name__ == "__main__":
    main()
