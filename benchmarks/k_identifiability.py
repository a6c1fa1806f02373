"""Is a synthetic set's true K what the k-means objective can find? The ceiling of its blobs, measured.

Run: OMP_NUM_THREADS=1 python benchmarks/k_identifiability.py [--sets syn_k60_unequal syn_k10 ...] [--seeds 3]

benchmarks/k_selection.py generates von Mises-Fisher blobs with known parameters; every K-selection
rule picks about 35 on syn_k60_unequal (60 blobs). This script asks whether 60 is recoverable at all,
with the parameters the generator used (never the labels alone):

- the blobs' sizes and concentrations, and the cosine between sibling means;
- the Bayes (MAP) partition with the true means, concentrations and weights, in the generator's 64-d
  space: the best any clustering into the true K can do (its accuracy and NMI are the set's ceiling);
  the recall of each blob under it, split by blob size;
- the nearest-true-mean partition (what spherical k-means with the true centroids does: equal
  concentrations, equal weights), and Lloyd (spherical k-means, as the sweep's) started from the true
  class means in the sweep's PCA-50 space: how many of the K clusters survive, and its objective and
  NMI against the sweep's own best-of-5 k-means at the true K and at the K the rules pick;
- which blobs each partition leaves without a cluster of their own, with their median size: merged
  (the cluster holding most of the blob is the main home of another blob too) or split (no cluster
  holds more than half of it);
- the vMF mixture BIC of these partitions, with one shared concentration (the `bic` criterion) and
  with a concentration per cluster: whether the model, not the optimiser, prefers fewer clusters.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from k_selection import PCA_DIM, SYNTHETIC, synthetic  # noqa: E402
from studyllm_core.algorithms import cluster_restarts, pca_svd_project, SweepConfig  # noqa: E402
from studyllm_core.algorithms.kselection import _log_vmf_normaliser, mixture_bic  # noqa: E402


def lloyd(x: np.ndarray, centroids: np.ndarray, max_iter: int = 300) -> tuple[np.ndarray, float]:
    """Spherical k-means (rows of x unit-norm) from the given centroids: labels and objective
    (sum of 1 - cosine to the own centroid, the sweep's objective for the cosine metric)."""
    c = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    labels = np.full(len(x), -1)
    for _ in range(max_iter):
        new = np.argmax(x @ c.T, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        sums = np.zeros_like(c)
        np.add.at(sums, labels, x)
        norms = np.linalg.norm(sums, axis=1)
        keep = norms > 0
        c[keep] = sums[keep] / norms[keep, None]
    return labels, float(np.sum(1.0 - np.einsum("ij,ij->i", x, c[labels])))


def per_cluster_bic(x: np.ndarray, labels: np.ndarray) -> float:
    """vMF mixture BIC of a hard partition with one concentration per cluster (Banerjee et al. 2005's
    estimate per cluster); rows of x unit-norm. Free parameters: K means, K concentrations, K-1 weights."""
    n, dim = x.shape
    total, k = 0.0, 0
    for c in np.unique(labels):
        members = x[labels == c].astype(np.float64)
        m = len(members)
        resultant = float(np.linalg.norm(members.sum(axis=0)))
        r_bar = min(resultant / m, 1.0 - 1e-9)
        kappa = max(r_bar * (dim - r_bar**2) / (1.0 - r_bar**2), 1e-9)
        total += m * _log_vmf_normaliser(kappa, dim) + kappa * resultant + m * math.log(m / n)
        k += 1
    return -2.0 * total + (k * (dim - 1) + k + (k - 1)) * math.log(n)


def resolution(truth: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per true blob: (merged, split). Merged: the cluster holding most of the blob is also the main
    home of another blob; split: no cluster holds more than half of it. A blob neither is resolved."""
    k_true = truth.max() + 1
    table = np.zeros((k_true, labels.max() + 1))
    np.add.at(table, (truth, labels), 1)
    home = np.argmax(table, axis=1)
    share = table[np.arange(k_true), home] / table.sum(axis=1)
    owners = np.bincount(home, minlength=table.shape[1])
    return owners[home] > 1, share <= 0.5


def unresolved(truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per true blob: True when it is merged with another or split (see `resolution`)."""
    merged, split = resolution(truth, labels)
    return merged | split


def main() -> None:
    from sklearn.metrics import accuracy_score, normalized_mutual_info_score as nmi

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["syn_k60_unequal", "syn_k30", "syn_k10"], choices=list(SYNTHETIC))
    parser.add_argument("--seeds", type=int, default=3, help="sweep seeds for k-means at the true K and the rules' K")
    parser.add_argument("--rules-k", type=int, nargs="*", default=None,
                        help="the K the rules pick, compared with the true K (default: 0.6x the true K)")
    args = parser.parse_args()
    for name in args.sets:
        spec = SYNTHETIC[name]
        x, truth, (means, kappas, sizes) = synthetic(**spec, params=True)
        k, n, dim = spec["k"], len(truth), x.shape[1]
        x64 = x.astype(np.float64)
        print(f"{name}: N={n:,}, true K={k}, {dim}-d, kappa {spec['kappa'][0]}-{spec['kappa'][1]}, "
              f"Dirichlet alpha {spec['alpha']}")
        q = np.quantile(sizes, [0, 0.25, 0.5, 0.75, 1])
        print(f"  blob sizes: min {q[0]:.0f}, quartiles {q[1]:.0f} / {q[2]:.0f} / {q[3]:.0f}, max {q[4]:.0f}; "
              f"{np.sum(sizes < 30)} blobs under 30 items, {np.sum(sizes < 50)} under 50 "
              f"(together {100 * sizes[sizes < 50].sum() / n:.1f}% of the items)")
        own = np.einsum("ij,ij->i", x64, means[truth])
        cos = means @ means.T
        sib = np.array([[a % spec["parents"] == b % spec["parents"] and a != b for b in range(k)] for a in range(k)])
        print(f"  cosine of an item to its own blob's mean: median {np.median(own):.3f}; between sibling means: "
              f"median {np.median(cos[sib]):.3f}; each mean's nearest other mean: median "
              f"{np.median(np.max(np.where(np.eye(k, dtype=bool), -1, cos), axis=1)):.3f}")
        log_c = np.array([_log_vmf_normaliser(float(kp), dim) for kp in kappas])
        log_post = log_c[None, :] + kappas[None, :] * (x64 @ means.T) + np.log(sizes / n)[None, :]
        bayes = np.argmax(log_post, axis=1)
        recall = np.bincount(truth, weights=(bayes == truth), minlength=k) / sizes
        small = sizes < 50
        split_recall = (f"; blob recall: median {100 * np.median(recall[small]):.0f}% for blobs under 50 items, "
                        f"{100 * np.median(recall[~small]):.0f}% for the others") if small.any() else ""
        print(f"  Bayes (true means, kappas, weights): accuracy {100 * accuracy_score(truth, bayes):.1f}%, "
              f"NMI {100 * nmi(truth, bayes):.2f}, clusters it uses {len(np.unique(bayes))}{split_recall}")
        nearest = np.argmax(x64 @ means.T, axis=1)
        print(f"  nearest true mean (k-means' assignment with the true centroids): accuracy "
              f"{100 * accuracy_score(truth, nearest):.1f}%, NMI {100 * nmi(truth, nearest):.2f}, "
              f"{np.sum(unresolved(truth, nearest))} of {k} blobs without a cluster of their own")
        z = pca_svd_project(x, PCA_DIM).Z.astype(np.float64)
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        class_means = np.vstack([z[truth == c].mean(axis=0) for c in range(k)])
        from_truth, obj_truth = lloyd(z, class_means)
        gone = unresolved(truth, from_truth)
        print(f"  PCA {PCA_DIM}: Lloyd from the true class means: {len(np.unique(from_truth))} clusters non-empty, "
              f"objective {obj_truth:.1f}, NMI {100 * nmi(truth, from_truth):.2f}, {gone.sum()} blobs without a cluster "
              f"of their own")
        rules_k = args.rules_k or [round(0.6 * k)]
        print(f"  {'partition':<34} {'objective':>9} {'NMI':>6} {'merged':>6} {'size':>5} {'split':>5} {'size':>5} "
              f"{'BIC shared kappa':>17} {'BIC per-cluster kappa':>22}")
        rows = [("truth (labels)", truth, math.nan), ("Bayes", bayes, math.nan),
                ("Lloyd from the true means", from_truth, obj_truth)]
        for seed in range(args.seeds):
            for kk in [k, *rules_k]:
                run = cluster_restarts(z.astype(np.float32), None, kk, SweepConfig(k_min=kk, k_max=kk, seed=seed)).chosen
                rows.append((f"sweep k-means K={kk}, seed {seed}", run.labels, run.objective))
        for label, labels, objective in rows:
            labels = np.unique(labels, return_inverse=True)[1]
            kk = labels.max() + 1
            merged, split = resolution(truth, labels)
            print(f"  {label:<34} {objective:9.1f} {100 * nmi(truth, labels):6.2f} {merged.sum():>6} "
                  f"{np.median(sizes[merged]) if merged.any() else 0:5.0f} {split.sum():>5} "
                  f"{np.median(sizes[split]) if split.any() else 0:5.0f} "
                  f"{mixture_bic(z, labels, kk):17.0f} {per_cluster_bic(z, labels):22.0f}")
        print()


if __name__ == "__main__":
    main()
