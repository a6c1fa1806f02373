"""Quality measures of a clustering: representatives, stability across restarts, silhouette, coverage,
dispersion, and agreement with ground-truth labels. Nothing builds an N x N matrix: silhouette on many
items is computed on a seeded sample and says so."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

# scikit-learn and scipy.optimize are imported where they are used: together they cost over a
# second, which every `studyllm` command would pay at start-up through the CLI's imports.

from .distances import sq_dist_to_assigned
from .validation import check_metric

DEFAULT_SILHOUETTE_SAMPLE = 5000
_SILHOUETTE_WORKING_MEMORY_MB = 64  # bounds scikit-learn's distance chunks (sample x rows)


def item_costs(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Distance of every item to its own centroid (float64): Euclidean, or 1 - cos for metric="cosine".
    Small is typical of the cluster; it ranks representatives and averages to the dispersion."""
    check_metric(metric)
    x = np.asarray(x)
    labels = np.asarray(labels)
    centroids = np.asarray(centroids, dtype=x.dtype)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    return costs_from_sq(sq_dist_to_assigned(x, centroids, labels), metric)


def costs_from_sq(sq: np.ndarray, metric: str) -> np.ndarray:
    """item_costs from the squared distances of the items to their own centroid (unit rows and centroids
    for cosine: 1 - cos = |a - b|^2 / 2), for a caller that has them (kmeans.refine_costs)."""
    return 0.5 * sq if metric == "cosine" else np.sqrt(sq)


def representatives(
    x: np.ndarray, labels: np.ndarray, centroids: np.ndarray, m: int = 5, metric: str = "cosine",
    costs: np.ndarray | None = None,
) -> list[list[int]]:
    """Indices of the (up to) m members closest to their centroid, per cluster, closest first. `costs`
    are the item_costs when the caller has them already (one pass over the items less)."""
    labels = np.asarray(labels)
    costs = item_costs(x, labels, centroids, metric) if costs is None else np.asarray(costs)
    out = []
    for c in range(len(centroids)):  # K passes over the labels, no sort of all N (a million items: 0.1 s per K)
        members = np.flatnonzero(labels == c)
        if members.size > m:  # the m cheapest, and every member tied with the m-th, then by (cost, index)
            member_costs = costs[members]
            threshold = np.partition(member_costs, m - 1)[m - 1]
            members = members[member_costs <= threshold]
        out.append(members[np.lexsort((members, costs[members]))][:m].tolist())
    return out


def dispersion(x: np.ndarray, labels: np.ndarray, centroids: np.ndarray, metric: str = "cosine") -> float:
    """Mean item cost: the mean distance of items to their own centroid (see item_costs)."""
    return float(item_costs(x, labels, centroids, metric).mean())


def coverage(labels: np.ndarray, min_size: int = 5) -> float:
    """Fraction of items that sit in clusters with at least `min_size` members (the rest are in clusters
    too small to describe a theme)."""
    sizes = np.bincount(np.asarray(labels))
    return float(sizes[sizes >= min_size].sum() / sizes.sum())


@dataclass(frozen=True)
class Silhouette:
    value: float  # mean silhouette coefficient in [-1, 1]; NaN when undefined (one cluster in the sample)
    method: str  # "exact" or "sample:n=<size>"


def silhouette(
    x: np.ndarray,
    labels: np.ndarray,
    metric: str = "cosine",
    sample_size: int = DEFAULT_SILHOUETTE_SAMPLE,
    seed: int = 0,
) -> Silhouette:
    """Mean silhouette; exact when N <= sample_size, otherwise on a seeded random sample of sample_size
    items. Cosine: from per-cluster sums of the unit rows (cosine_silhouette_samples, linear in the items,
    scikit-learn's value up to round-off); Euclidean: scikit-learn's (quadratic in the items, distance
    chunks capped at 64 MB)."""
    check_metric(metric)
    labels = np.asarray(labels)
    n = labels.size
    sampled = n > sample_size
    method = f"sample:n={sample_size}" if sampled else "exact"
    x = np.asarray(x)
    if sampled:
        index = np.sort(np.random.default_rng(seed).choice(n, size=sample_size, replace=False))
        x, labels = x[index], labels[index]
    x = x.astype(np.float64)  # scikit-learn's float32 distance path upcasts chunk by chunk, slowly
    n_labels = np.unique(labels).size
    if not 2 <= n_labels < labels.size:
        return Silhouette(float("nan"), method)
    if metric == "cosine":
        return Silhouette(float(np.mean(cosine_silhouette_samples(x, labels))), method)
    import sklearn
    from sklearn.metrics import silhouette_score

    with sklearn.config_context(working_memory=_SILHOUETTE_WORKING_MEMORY_MB):
        return Silhouette(float(silhouette_score(x, labels, metric=metric)), method)


def cosine_silhouette_samples(x: np.ndarray, labels: np.ndarray, block: int = 65_536) -> np.ndarray:
    """Silhouette of every row under the cosine distance 1 - cos, as scikit-learn's silhouette_samples
    defines it (0 for a cluster of one), without the N x N distances: an item's summed distance to the
    members of cluster c is n_c - u . S_c (u its unit row, S_c the sum of c's unit rows), so the cost is
    N x K x dim. Labels are any integers; rows must be non-zero."""
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    codes = np.unique(np.asarray(labels), return_inverse=True)[1].ravel()
    k = int(codes.max()) + 1
    sizes = np.bincount(codes, minlength=k).astype(np.float64)
    sums = np.zeros((k, unit.shape[1]))
    np.add.at(sums, codes, unit)
    out = np.empty(unit.shape[0])
    for start in range(0, unit.shape[0], block):
        u, own = unit[start : start + block], codes[start : start + block]
        rows = np.arange(own.size)
        total = sizes[None, :] - u @ sums.T  # summed distances to every cluster, the item itself included
        self_distance = 1.0 - np.einsum("ij,ij->i", u, u)  # 0 up to round-off
        own_size = sizes[own]
        intra = (total[rows, own] - self_distance) / np.maximum(own_size - 1.0, 1.0)
        mean = total / sizes[None, :]
        mean[rows, own] = np.inf
        inter = mean.min(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            s = (inter - intra) / np.maximum(intra, inter)
        out[start : start + block] = np.where(own_size > 1, np.nan_to_num(s), 0.0)
    return out


@dataclass(frozen=True)
class Stability:
    mean_ari: float  # mean adjusted Rand index over all pairs of restarts (NaN with one restart)
    std_ari: float
    n_pairs: int


def stability(labelings: Sequence[np.ndarray]) -> Stability:
    """Agreement between restarts of the same K: adjusted Rand index over all pairs of labelings."""
    scores = [adjusted_rand(a, b) for a, b in combinations(labelings, 2)]
    if not scores:
        return Stability(float("nan"), float("nan"), 0)
    return Stability(float(np.mean(scores)), float(np.std(scores)), len(scores))


def clustering_accuracy(true_labels: np.ndarray, labels: np.ndarray) -> float:
    """Best-match accuracy: the share of items whose cluster maps to their true class under the best
    one-to-one matching of clusters to classes (Hungarian algorithm on the contingency matrix)."""
    return _accuracy(contingency(true_labels, labels))


def _accuracy(table: np.ndarray) -> float:
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def contingency(true_labels: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Dense int64 contingency table (classes x clusters present, in sorted order), as scikit-learn's
    contingency_matrix. Small non-negative integer codes (a sweep's labels) are counted by one bincount
    of the pair codes: linear in N, where sorting N labels twice per metric dominated at a million items."""
    true_labels, labels = np.asarray(true_labels), np.asarray(labels)
    codes = []
    for values in (true_labels, labels):
        small = values.size and values.dtype.kind in "iub" and values.min() >= 0 and values.max() < 1 << 20
        codes.append(values.astype(np.int64) if small else np.unique(values, return_inverse=True)[1].ravel())
    width = int(codes[1].max()) + 1 if labels.size else 1
    height = int(codes[0].max()) + 1 if labels.size else 1
    table = np.bincount(codes[0] * width + codes[1], minlength=height * width).reshape(height, width)
    return table[table.any(axis=1)][:, table.any(axis=0)]


def label_metrics(true_labels: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """ACC (Hungarian), NMI (arithmetic mean normaliser) and ARI of a clustering against ground-truth labels:
    scikit-learn's definitions (its mutual_info_score, its pair counts), all three from one contingency table."""
    true_labels, labels = np.asarray(true_labels), np.asarray(labels)
    if true_labels.shape != labels.shape:
        raise ValueError(
            f"ground-truth labels have shape {true_labels.shape} but the clustering has {labels.shape}; "
            "pass one label per item."
        )
    from sklearn.metrics import mutual_info_score

    table = contingency(true_labels, labels)
    n = int(table.sum())
    classes, clusters = table.sum(axis=1), table.sum(axis=0)
    if table.shape[0] == table.shape[1] == 1:
        nmi = 1.0
    else:
        mi = mutual_info_score(None, None, contingency=table.astype(np.float64))
        entropies = [-float(np.sum((c / n) * (np.log(c) - np.log(n)))) for c in (classes, clusters)]
        nmi = 0.0 if mi == 0 else float(mi / np.mean(entropies))
    return {"acc": _accuracy(table), "nmi": nmi, "ari": _adjusted_rand(table)}


def adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    """scikit-learn's adjusted_rand_score of two labelings, from one contingency table (no sort of N labels
    for a sweep's integer labels, none of scikit-learn's per-call validation)."""
    return _adjusted_rand(contingency(a, b))


def _adjusted_rand(table: np.ndarray) -> float:
    """adjusted_rand_score from pair_confusion_matrix's counts, in Python integers (no overflow)."""
    n = int(table.sum())
    sum_squares = int(np.sum(table.astype(np.int64) ** 2))
    fp = int((table @ table.sum(axis=0)).sum()) - sum_squares
    fn = int((table.T @ table.sum(axis=1)).sum()) - sum_squares
    tp = sum_squares - n
    tn = n * n - fp - fn - sum_squares
    if fn == 0 and fp == 0:
        return 1.0
    return float(2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)))
