"""The sweep at scale: `studyllm sweep` as a user runs it, against scikit-learn on the same projected vectors.

Run alone (labelled blobs through the real path: loopback server in "blobs" mode, `studyllm embed`, then
the sweep): nice -n 10 python benchmarks/_scale_sweep.py --n 200000,1000000 [--k-min 10 --k-max 19]

`sweep_stage(path, n, model, env, base, ks, kmeans_max_n)` is what benchmarks/bench_scale.py calls for
one prepared dataset (its texts already embedded under `model` by the server at `base`, the CLI's
environment in `env`). It runs, each timed with its peak RSS where it is a process of its own:

- `studyllm sweep` over K = min(ks)..max(ks), RESTARTS restarts, PCA PCA_DIM (a subprocess, wall time
  including start-up, reading the vectors from the cache, the PCA and writing the files; peak RSS of the
  process, _measure.run_measured);
- the K loop of that same process, as it reports it (`--json` `seconds.k_loop`), with what it spent
  outside the loop (embed: the vectors from the cache; pca; second_pass: the K near the first choice
  re-optimised, algorithms/focus.py; write: the files and their records; rest:
  start-up, reading the input file, provenance);
- scikit-learn MiniBatchKMeans(K, n_init=RESTARTS, batch_size=4096) for every K on the same projected
  vectors (the vectors `studyllm embed --out` returns from the cache, PCA-projected by the sweep's own
  project_dataset, rows unit-normalised as the sweep's spherical k-means sees them), and KMeans(K,
  n_init=RESTARTS) up to kmeans_max_n items.

With reference labels (a `label` column of the input, or `labels`), each row carries the NMI at the true
K (the number of distinct labels, when swept) and, for the CLI, at the K it chose. Every row is a dict:
stage, n, seconds, per_s, rss_mb, plus nmi, best_k, ratio (seconds over MiniBatchKMeans's: both the
process's and its K loop's are printed against the same peer) where known.
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

sys.path.insert(0, str(Path(__file__).parent))
from _measure import STUDYLLM, exponents, print_growth, row, run_measured, run_with_cpu  # noqa: E402

RESTARTS, PCA_DIM, BATCH = 3, 50, 4096
MBKM, KMEANS, CLI = "sweep: sklearn MiniBatchKMeans", "sweep: sklearn KMeans", "sweep: studyllm sweep"
CLI_LOOP = "sweep: studyllm sweep, K loop"  # the K loop of the same process, from its --json `seconds`


def projected_vectors(path: Path, model: str, env: dict[str, str], base: str, pca_dim: int, text_column: str | None) -> np.ndarray:
    """The vectors the sweep clusters: `studyllm embed --out` (all from the cache), projected by the sweep's
    project_dataset, rows unit-normalised (float32)."""
    from studyllm_core.services.sweep.projection import project_dataset

    with tempfile.TemporaryDirectory(prefix="sl-scale-sweep-") as tmp:
        out = Path(tmp) / "x.npy"
        cmd = [STUDYLLM, "embed", str(path), "--provider", "openai-compatible", "--model", model, "--base-url", base,
               "--out", str(out), "--json", *(["--text-column", text_column] if text_column else [])]
        run_measured(cmd, env)
        x = np.load(out, mmap_mode="r")
        z = project_dataset(x, pca_dim).projection.Z
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return z


def nmi_at(truth: np.ndarray | None, labels: np.ndarray) -> float | None:
    from sklearn.metrics import normalized_mutual_info_score

    return None if truth is None else float(normalized_mutual_info_score(truth, labels))


def sweep_stage(path: Path, n: int, model: str, env: dict[str, str], base: str, ks: list[int],
                kmeans_max_n: int = 200_000, *, restarts: int = RESTARTS, pca_dim: int = PCA_DIM,
                label_column: str | None = None, text_column: str | None = None,
                labels: np.ndarray | None = None) -> list[dict[str, Any]]:
    """`studyllm sweep` over K = min(ks)..max(ks) on the dataset at `path` (texts embedded under `model` by the
    server at `base`) vs scikit-learn MiniBatchKMeans / KMeans on the same projected vectors (module
    docstring). `label_column` (in the file) or `labels` (one per text) give NMI; the rows are returned."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    k_min, k_max = min(ks), max(ks)
    out = Path(env.get("STUDYLLM_HOME") or tempfile.gettempdir()) / f"scale-sweep-{n}-{os.getpid()}"
    cli = [STUDYLLM, "sweep", str(path), "--embed-provider", "openai-compatible", "--embed-model", model,
           "--base-url", base, "--k-min", str(k_min), "--k-max", str(k_max), "--restarts", str(restarts),
           "--pca-dim", str(pca_dim), "--out", str(out), "--json",
           *(["--label-column", label_column] if label_column else []),
           *(["--text-column", text_column] if text_column else [])]
    seconds, rss, stdout, cpu = run_with_cpu(cli, env)  # CPU: what the pipeline stage's runs are compared on too
    summary = json.loads(stdout)
    steps = summary["seconds"]  # the sweep's own step times (embed, pca, k_loop, per_k, write)
    by_k = {r["k"]: r for r in summary["per_k"]}
    if labels is None and label_column:
        labels = _read_labels(path, label_column)
    truth = None if labels is None else np.unique(np.asarray([str(v) for v in labels]), return_inverse=True)[1]
    true_k = None if truth is None else int(truth.max()) + 1
    plan = (summary.get("plan") or {}).get("text")
    cli_row = row(CLI, n, seconds, rss, best_k=summary["best_k"], plan=plan, **cpu,
                  nmi=by_k.get(true_k, {}).get("nmi"), nmi_best_k=by_k.get(summary["best_k"], {}).get("nmi"))
    outside = {key: steps[key] for key in ("embed", "pca", "second_pass", "write") if key in steps}
    outside["rest"] = seconds - steps["k_loop"] - sum(outside.values())  # start-up, reading the file, provenance
    rows = [cli_row, row(CLI_LOOP, n, steps["k_loop"], None, outside=outside)]

    z = projected_vectors(path, model, env, base, pca_dim, text_column)
    peers = [(MBKM, lambda k: MiniBatchKMeans(k, n_init=restarts, random_state=0, batch_size=BATCH))]
    if n <= kmeans_max_n:
        peers.append((KMEANS, lambda k: KMeans(k, n_init=restarts, random_state=0)))
    for stage, make in peers:
        start, nmi = time.perf_counter(), None
        for k in range(k_min, k_max + 1):
            fitted = make(k).fit(z)
            if k == true_k:
                nmi = nmi_at(truth, fitted.labels_)
        rows.append(row(stage, n, time.perf_counter() - start, None, nmi=nmi))
    peer = next(r["seconds"] for r in rows if r["stage"] == MBKM)
    for r in rows:
        r["ratio"] = r["seconds"] / peer
    return rows


def _read_labels(path: Path, column: str) -> np.ndarray:
    import pandas as pd

    return pd.read_csv(path, usecols=[column])[column].to_numpy()


# -- running alone: labelled blobs through the real path -------------------------------------------


def write_blobs(path: Path, n: int, k: int, seed: int = 0) -> np.ndarray:
    """A CSV (text,label) of n texts "cB item I" over k blobs of unequal sizes (Dirichlet(2) shares, at
    least 50 each), in shuffled order; the loopback server in "blobs" mode maps each near its blob."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    sizes = rng.multinomial(n - 50 * k, rng.dirichlet(np.full(k, 2.0))) + 50
    labels = rng.permutation(np.repeat(np.arange(k), sizes))
    texts = [f"c{c} item {i}" for i, c in enumerate(labels.tolist())]
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)
    return labels


def print_table(rows: list[dict[str, Any]], ns: list[int]) -> None:
    print(f"{'stage':<34}{'N':>10}{'seconds':>10}{'peak RSS MB':>13}{'x MBKM':>8}{'NMI@true K':>11}  notes")
    for r in rows:
        rss = f"{r['rss_mb']:,.0f}" if r.get("rss_mb") else "-"
        nmi = "-" if r.get("nmi") is None else f"{r['nmi']:.4f}"
        note = ""
        if r["stage"] == CLI:
            chosen = "-" if r.get("nmi_best_k") is None else f"{r['nmi_best_k']:.4f}"
            note = f"process start to exit; best K {r['best_k']} (NMI {chosen}); {r.get('plan')}"
        if r["stage"] == CLI_LOOP:
            note = "outside the loop: " + ", ".join(f"{key} {value:.1f} s" for key, value in r["outside"].items())
        print(f"{r['stage']:<34}{r['n']:>10,}{r['seconds']:>10.2f}{rss:>13}{r['ratio']:>8.2f}{nmi:>11}  {note}")
    print_growth(exponents(rows, ns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", default="200000", help="comma-separated N values (default 200000)")
    parser.add_argument("--blobs", type=int, default=15, help="true number of blobs (default 15)")
    parser.add_argument("--k-min", type=int, default=10)
    parser.add_argument("--k-max", type=int, default=19)
    parser.add_argument("--restarts", type=int, default=RESTARTS)
    parser.add_argument("--kmeans-max-n", type=int, default=200_000, help="KMeans peer only up to this N")
    parser.add_argument("--dim", type=int, default=384, help="embedding dimensions of the loopback server")
    parser.add_argument("--seed", type=int, default=0,
                        help="data seed: blob sizes, order and (as part of the model name) blob directions (default 0)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args()
    from _db import scratch_database

    from studyllm_core.testing import stub_server_process

    ns = [int(v) for v in args.n.split(",")]
    ks = list(range(args.k_min, args.k_max + 1))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sl-scale-sweep-") as tmp, scratch_database() as (_engine, url), \
            stub_server_process("--dim", str(args.dim), "--vectors", "blobs") as (base, _):
        work = Path(tmp)  # the blobs' CSV files (17 MB at a million), removed at the end
        env = {**os.environ, "STUDYLLM_DATABASE_URL": url, "OPENAI_COMPATIBLE_BASE_URL": base}
        for n in ns:
            path = work / f"blobs-{n}.csv"
            write_blobs(path, n, args.blobs, seed=args.seed)
            model = f"scale-blobs-{n}" + (f"-s{args.seed}" if args.seed else "")  # the server's blobs follow the name
            start = time.perf_counter()
            cmd = [STUDYLLM, "embed", str(path), "--provider", "openai-compatible", "--model", model,
                   "--base-url", base, "--json"]
            run_measured(cmd, env)
            print(f"N={n:,}: embedded in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
            rows += sweep_stage(path, n, model, env, base, ks, args.kmeans_max_n, restarts=args.restarts,
                                label_column="label")
            for r in rows:
                if r["n"] == n:
                    print(f"  {r['stage']}: {r['seconds']:.1f} s", file=sys.stderr, flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=1))
    print(f"blobs (data seed {args.seed}): {args.blobs} true clusters, {args.dim}-d vectors; K={ks[0]}..{ks[-1]}, {args.restarts} restarts, "
          f"PCA {PCA_DIM}; this machine is shared: read ratios, not absolute figures")
    print_table(rows, ns)


if __name__ == "__main__":
    main()
