"""Breathing k-means (Fritzke 2020, arXiv 2006.15666): a local search that moves a k-means solution
out of the local optimum Lloyd settled in, by adding centroids where the error is large and removing
the ones that matter least.

One cycle ("breath"), from a converged solution with K centroids and breathing depth m:
- breathe in: m new centroids, each a small random offset (0.01 x the root-mean-square error) from one
  of the m centroids with the largest summed squared error, then Lloyd with K + m centroids;
- breathe out: remove the m centroids of lowest utility (the error their members would add if they
  moved to their second-nearest centroid), skipping any centroid that is the nearest neighbour of one
  already removed (neighbour freezing, so two close centroids are not both removed), then Lloyd with K.
The cycle is kept as the best so far when the objective fell by more than a relative 1e-4; otherwise
m is halved (the reference decreases it by one). The search stops at m = 0. As in the reference
implementation (gittar/bkmeans, v1.2) the next cycle starts from the last solution and the result is
the best one seen, so it is never worse than the start. It runs on our own Lloyd engine (spherical or
Euclidean), deterministic for a seed.

Why halving, and a depth that grows with K (depth_for): on 60 overlapping blobs (docs/methods.md) the
reference's depth 5 closes a third of the gap to the true partition's objective, depth 20 all of it;
depth 20 with halving reaches the same objective in 6-7 cycles instead of 22, the cost of depth 5.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .distances import centre_sq_distances, nearest_two, row_sq_norms, sq_dist_to_assigned, transposed
from .lloyd import Lloyd
from .results import ClusteringResult
from .validation import as_matrix, check_positive_int, normalize_rows

BREATHING_DEPTH = 5  # the reference's default m: the least depth_for gives
MAX_CYCLES = 100  # a bound on the cycles (each kept one lowers the objective by > IMPROVEMENT; never reached in docs/methods.md's runs)
IMPROVEMENT = 1e-4  # relative objective decrease a cycle must bring to be kept (the reference's tol)
OFFSET = 0.01  # new centroids' offset, in units of the root-mean-square error (the reference's eps)


@dataclass(frozen=True)
class BreathingReport:
    """What one breathing search did: the objective it started from and ended at, the cycles it ran
    and how many of them were kept, and the Lloyd iterations they took."""

    objective_before: float
    objective_after: float
    cycles: int
    kept: int
    n_iter: int

    @property
    def gain(self) -> float:
        """Relative objective decrease (0 when nothing was kept)."""
        return 1.0 - self.objective_after / self.objective_before if self.objective_before > 0 else 0.0


def breathe(
    Z: np.ndarray,
    start: ClusteringResult,
    *,
    depth: int | None = None,
    max_iter: int = 300,
    tol: float = 1e-4,
    max_cycles: int = MAX_CYCLES,
    breath_iter: int | None = None,
) -> tuple[ClusteringResult, BreathingReport]:
    """Breathing k-means from `start` (a converged k-means fit of Z's rows: labels consistent with its
    centroids, metric "cosine" or "euclidean"): the best solution the search reached and what it did.
    When no cycle improves, `start` itself is returned. Random offsets are drawn from start.seed, so the
    result is deterministic for a start. `depth` None: depth_for(K). `max_iter` and `tol` are each
    Lloyd run's (as k_llmmeans')."""
    depth = depth_for(start.k) if depth is None else check_positive_int(depth, "depth", minimum=0)
    max_cycles = check_positive_int(max_cycles, "max_cycles", minimum=0)
    x = as_matrix(Z, "Z")
    n, k = x.shape[0], start.k
    spherical = start.metric == "cosine"
    if spherical:
        x = normalize_rows(x, "Z")
    if start.labels.shape != (n,):
        raise ValueError(f"start has {start.labels.shape[0]} labels for {n} rows; pass the fit of these rows.")
    depth = min(depth, k, n - k)  # K + m centroids need K + m distinct items
    report = BreathingReport(start.objective, start.objective, 0, 0, 0)
    if k < 2 or depth < 1 or max_cycles < 1:
        return start, report
    xt, x_sq = transposed(x), row_sq_norms(x)
    rng = np.random.default_rng([start.seed, 0xB4EA7E])

    inner = breath_iter or max_iter

    def lloyd(centroids: np.ndarray) -> tuple[Lloyd, int, bool]:
        state = Lloyd(x, len(centroids), spherical, tol, xt=xt, x_sq=x_sq)
        state.set_centroids(centroids)
        steps, converged = state.run(inner)
        state.settle()
        return state, steps, converged

    centroids = np.asarray(start.centroids, dtype=x.dtype)
    labels = np.asarray(start.labels, dtype=np.intp)
    best: tuple[Lloyd, float, bool] | None = None
    best_objective = start.objective
    m, cycles, kept, n_iter = depth, 0, 0, 0
    while m > 0 and cycles < max_cycles:
        cycles += 1
        grown = _breathe_in(x, centroids, labels, m, spherical, rng)
        state, steps, _ = lloyd(grown)
        n_iter += steps
        state, steps, converged = lloyd(_breathe_out(xt, x_sq, state.centroids, m))
        n_iter += steps
        objective = state.objective()
        centroids, labels = state.centroids, state.labels
        if objective < best_objective * (1.0 - IMPROVEMENT):
            best, best_objective, kept = (state, objective, converged), objective, kept + 1
        else:
            m //= 2
    report = BreathingReport(start.objective, best_objective, cycles, kept, n_iter)
    if best is None:
        return start, report
    state, objective, converged = best
    if not converged:  # the breaths' Lloyd runs were cut at breath_iter: finish the best one
        steps, _ = state.run(max_iter)
        state.settle()
        n_iter += steps
        objective = state.objective()  # Lloyd never raises it
        report = replace(report, objective_after=objective, n_iter=n_iter)
    return replace(
        start,
        labels=state.labels.astype(np.int32),
        centroids=state.centroids.astype(np.float64),
        objective=objective,
        n_iter=start.n_iter + n_iter,
        converged=True,
    ), report


def depth_for(k: int) -> int:
    """The breathing depth at K: the reference's 5, or K / 3 at large K (a third of the centroids
    may move per breath; halving on failure keeps the cycles at about log2 of it)."""
    return max(BREATHING_DEPTH, k // 3)


def _breathe_in(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray, m: int, spherical: bool,
                rng: np.random.Generator) -> np.ndarray:
    """`centroids` plus m new ones, each a small random offset from one of the m centroids with the
    largest summed squared error (unit-normalised when spherical)."""
    k = centroids.shape[0]
    error = np.bincount(labels, weights=sq_dist_to_assigned(x, centroids, labels), minlength=k)
    largest = np.argsort(-error, kind="stable")[:m]
    rmse = np.sqrt(error.sum() / x.shape[0])
    new = centroids[largest].astype(np.float64) + OFFSET * rmse * (rng.random((m, x.shape[1])) - 0.5)
    if spherical:
        new /= np.linalg.norm(new, axis=1, keepdims=True)
    return np.vstack([centroids.astype(np.float64), new])


def _breathe_out(xt: np.ndarray, x_sq: np.ndarray, centroids: np.ndarray, m: int) -> np.ndarray:
    """`centroids` without the m of lowest utility (summed d2 - d1 of their members), never removing
    the nearest neighbour of a centroid already removed while enough centroids stay unfrozen."""
    total = centroids.shape[0]
    labels, d1, d2 = nearest_two(xt, centroids, x_sq)
    utility = np.bincount(labels, weights=d2.astype(np.float64) - d1, minlength=total)
    neighbour = np.argmin(centre_sq_distances(centroids), axis=1)
    removed: list[int] = []
    frozen: set[int] = set()
    for index in np.argsort(utility, kind="stable"):
        if int(index) in frozen:
            continue
        removed.append(int(index))
        if len(frozen) + m < total:
            frozen.add(int(neighbour[index]))
        if len(removed) == m:
            break
    else:  # a removed centroid frozen later counts toward the bound: fill up by utility (tiny K only)
        rest = [int(i) for i in np.argsort(utility, kind="stable") if int(i) not in removed]
        removed += rest[: m - len(removed)]
    return np.delete(centroids, removed, axis=0)


def resize(Z: np.ndarray, start: ClusteringResult, k: int, *, max_iter: int = 300, tol: float = 1e-4,
           seed: int | None = None) -> ClusteringResult:
    """A k-means fit at `k` centroids grown or shrunk from `start` (a converged fit of Z's rows at
    another K): one breath in (k - K new centroids beside those of largest error) or out (the K - k of
    lowest utility removed), then Lloyd to convergence. A start for K from a neighbouring K's optimum:
    the optimal objective never rises with K, so a neighbour's solution carries what it found.
    `seed` (default start.seed) draws the new centroids' offsets; the result carries it."""
    x = as_matrix(Z, "Z")
    n = x.shape[0]
    k = check_positive_int(k, "k", minimum=1)
    if k > n:
        raise ValueError(f"k={k} exceeds the {n} rows; use k <= {n}.")
    spherical = start.metric == "cosine"
    if spherical:
        x = normalize_rows(x, "Z")
    if start.labels.shape != (n,):
        raise ValueError(f"start has {start.labels.shape[0]} labels for {n} rows; pass the fit of these rows.")
    seed = start.seed if seed is None else seed
    xt, x_sq = transposed(x), row_sq_norms(x)
    centroids = np.asarray(start.centroids, dtype=np.float64)
    if k > start.k:
        centroids = _breathe_in(x, centroids, np.asarray(start.labels, dtype=np.intp), k - start.k, spherical,
                                np.random.default_rng([seed, 0xB4EA7E, k]))
    elif k < start.k:
        centroids = _breathe_out(xt, x_sq, centroids.astype(x.dtype), start.k - k)
    state = Lloyd(x, k, spherical, tol, xt=xt, x_sq=x_sq)
    state.set_centroids(centroids)
    steps, converged = state.run(max_iter)
    state.settle()
    return replace(start, labels=state.labels.astype(np.int32), centroids=state.centroids.astype(np.float64),
                   objective=state.objective(), n_iter=steps, converged=converged, seed=seed, summaries=None)
