"""Affine k-subspaces clustering: each cluster is a rank-r affine subspace (mean + r principal
directions) and items go to the subspace they are closest to, for data that lie near several
low-dimensional flats rather than around centres."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .distances import chunk_rows, column_argmin, row_sq_norms, sq_dist_to_points, transposed
from .kmeans import Embed, Project, Summarize, check_summary_args, summary_vectors
from .projection import principal_axes
from .results import ClusteringResult
from .seeding import kmeans_plusplus
from .validation import as_matrix, check_metric, check_n_clusters, check_positive_int, normalize_rows


def _members(labels: np.ndarray, k: int) -> list[np.ndarray]:
    """Item indices of every cluster, in index order."""
    order = np.argsort(labels, kind="stable")
    return np.split(order, np.cumsum(np.bincount(labels, minlength=k))[:-1])


def _fit(x: np.ndarray, labels: np.ndarray, k: int, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (K, d) and orthonormal basis (K, rank, d) of every cluster (each has >= rank + 1 members),
    plus every item's squared residual to its own cluster's subspace."""
    d = x.shape[1]
    means = np.empty((k, d))
    bases = np.zeros((k, rank, d))
    own = np.empty(x.shape[0])
    for cluster, index in enumerate(_members(labels, k)):
        members = x[index]
        means[cluster] = members.mean(axis=0)
        if rank:
            bases[cluster] = principal_axes(members, means[cluster], rank)[0]
        centred = members - means[cluster]
        own[index] = row_sq_norms(centred) - row_sq_norms(centred @ bases[cluster].T)
    return means, bases, np.maximum(own, 0.0)


def _residuals(xt: np.ndarray, x_sq: np.ndarray, means: np.ndarray, bases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest subspace and squared residual of every item: ||x - m||^2 - ||B (x - m)||^2, in row blocks."""
    k, rank, _ = bases.shape
    n = xt.shape[1]
    flat = bases.reshape(k * rank, bases.shape[2])
    offsets = np.einsum("krd,kd->kr", bases, means)[:, :, None]
    m_sq = row_sq_norms(means)[:, None]
    labels = np.empty(n, dtype=np.intp)
    best = np.empty(n)
    step = chunk_rows(k * (rank + 1))
    for start in range(0, n, step):
        cols = xt[:, start : start + step]
        block = (-2 * means) @ cols
        block += m_sq
        block += x_sq[start : start + step]
        if rank:
            coords = (flat @ cols).reshape(k, rank, -1) - offsets
            block -= np.einsum("krc,krc->kc", coords, coords)
        np.maximum(block, 0, out=block)
        labels[start : start + step], best[start : start + step] = column_argmin(block)
    return labels, best


def _local_init(
    x: np.ndarray, xt: np.ndarray, x_sq: np.ndarray, k: int, rank: int, rng: np.random.Generator
) -> np.ndarray:
    """Initial labels from local subspaces: k-means++ picks K seed items and each seed's nearest
    min(N // K, 10 (rank + 1)) items give a mean and principal directions. Local fits follow a flat's
    own direction, where a k-means start would cut long flats across."""
    seeds = kmeans_plusplus(x, k, rng, xt=xt, x_sq=x_sq)
    size = min(x.shape[0] // k, 10 * (rank + 1))
    means = np.empty((k, x.shape[1]))
    bases = np.zeros((k, rank, x.shape[1]))
    for cluster, seed in enumerate(seeds):
        dist = sq_dist_to_points(xt, x[seed : seed + 1], x_sq)[0]
        near = x[np.argpartition(dist, size - 1)[:size]]
        means[cluster] = near.mean(axis=0)
        if rank:
            bases[cluster] = principal_axes(near, means[cluster], rank)[0]
    return _residuals(xt, x_sq, means, bases)[0]


def _refill_small(labels: np.ndarray, residual: np.ndarray, k: int, minimum: int) -> None:
    """Give every cluster with fewer than `minimum` members the worst-fitting items (largest residual)
    of clusters that can spare them, so each subspace stays well defined."""
    counts = np.bincount(labels, minlength=k)
    short = np.flatnonzero(counts < minimum)
    if not short.size:
        return
    worst_first = iter(np.argsort(-residual, kind="stable"))
    for cluster in short:
        while counts[cluster] < minimum:
            item = next(i for i in worst_first if counts[labels[i]] > minimum)
            counts[labels[item]] -= 1
            labels[item] = cluster
            counts[cluster] += 1


def k_subspaces(
    X: np.ndarray,
    K: int,
    rank_r: int,
    seed: int = 0,
    *,
    texts: Sequence[str] | None = None,
    summarize: Summarize | None = None,
    embed: Embed | None = None,
    project: Project | None = None,
    llm_rounds: int = 2,
    iters_per_round: int = 5,
    samples_per_cluster: int = 10,
    max_iter: int = 100,
    tol: float = 1e-6,
    metric: str = "euclidean",
) -> ClusteringResult:
    """Cluster the rows of X into K affine subspaces of rank `rank_r` (rank 0 is k-means).

    Starts from local subspaces around K k-means++ seed items (see _local_init), then alternates: fit
    each cluster's mean and top `rank_r` principal directions; assign each item to the subspace with
    the least squared residual. A cluster left with fewer than rank_r + 1 members (too few to span its
    subspace) is refilled with the worst-fitting items of clusters that can spare them, so the rank is
    never reduced. Stops when labels are unchanged or the objective
    (sum of squared residuals) improves by less than tol relative. metric="cosine" unit-normalises rows
    first. Computed in float64 since residuals are small differences of large numbers.

    With `summarize` and `embed` (and one text per row) it is the k-subspaces variant of k-LLMmeans:
    for each of `llm_rounds` rounds, up to `iters_per_round` iterations, then each cluster's subspace
    is anchored at the embedding of a summary of a k-means++ sample of its members (kmeans.summary_vectors,
    the same round as k-LLMmeans: K summarize calls, one embed call, `project` into X's space) while it
    keeps its principal directions, and items are reassigned to those subspaces; then iterations
    continue to convergence or `max_iter` in all, so the labels are k-subspaces ones and `summaries` /
    `summary_centroids` the last round's.
    """
    x = as_matrix(X, "X").astype(np.float64, copy=False)
    n, d = x.shape
    K = check_n_clusters(K, n)
    check_metric(metric)
    rank_r = check_positive_int(rank_r, "rank_r", minimum=0)
    max_iter = check_positive_int(max_iter, "max_iter")
    if rank_r >= d:
        raise ValueError(f"rank_r={rank_r} must be below the dimension d={d} (a full-rank subspace fits everything).")
    if K * (rank_r + 1) > n:
        raise ValueError(f"K x (rank_r + 1) = {K * (rank_r + 1)} exceeds N={n}; lower K or rank_r.")
    use_llm = check_summary_args(n, texts, summarize, embed, llm_rounds, iters_per_round, samples_per_cluster, max_iter)
    if metric == "cosine":
        x = normalize_rows(x, "X")
    xt, x_sq = transposed(x), row_sq_norms(x)
    rng = np.random.default_rng(seed)
    labels = _local_init(x, xt, x_sq, K, rank_r, rng)
    _refill_small(labels, np.zeros(n), K, rank_r + 1)

    def iterate(labels: np.ndarray, budget: int) -> tuple[np.ndarray, int, bool]:
        previous = np.inf
        for step in range(1, budget + 1):
            means, bases, _ = _fit(x, labels, K, rank_r)
            new_labels, residual = _residuals(xt, x_sq, means, bases)
            _refill_small(new_labels, residual, K, rank_r + 1)
            objective = float(residual.sum())
            unchanged = np.array_equal(new_labels, labels)
            labels = new_labels
            if unchanged or (np.isfinite(previous) and previous - objective <= tol * previous):
                return labels, step, True
            previous = objective
        return labels, budget, False

    n_iter = 0
    summaries: list[str] | None = None
    anchors: np.ndarray | None = None
    rounds = llm_rounds if use_llm else 0
    for _ in range(rounds):
        labels, steps, _ = iterate(labels, iters_per_round)
        n_iter += steps
        _, bases, _ = _fit(x, labels, K, rank_r)
        summaries, anchors = summary_vectors(
            x, labels, K, metric == "cosine", texts, summarize, embed, project, samples_per_cluster, rng
        )
        labels, residual = _residuals(xt, x_sq, anchors, bases)  # the summaries anchor the subspaces
        _refill_small(labels, residual, K, rank_r + 1)
    labels, steps, converged = iterate(labels, max_iter - n_iter)
    n_iter += steps
    means, bases, own = _fit(x, labels, K, rank_r)  # subspaces consistent with the final labels
    return ClusteringResult(
        labels=labels.astype(np.int32),
        centroids=means,
        objective=float(own.sum()),
        n_iter=n_iter,
        converged=converged,
        metric=metric,
        seed=seed,
        bases=bases,
        summaries=summaries,
        summary_centroids=anchors,
        n_summarize_calls=K * rounds,
    )
