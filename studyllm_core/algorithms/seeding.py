"""k-means++ seeding (greedy variant with a few local trials per centre, as in Arthur & Vassilvitskii and
scikit-learn): used both to seed k-means and to pick diverse cluster members for LLM summaries."""

from __future__ import annotations

import numpy as np

from .distances import row_sq_norms, sq_dist_to_points, transposed


def kmeans_plusplus(
    x: np.ndarray,
    n_centres: int,
    rng: np.random.Generator,
    *,
    xt: np.ndarray | None = None,
    x_sq: np.ndarray | None = None,
    n_local_trials: int | None = None,
) -> np.ndarray:
    """Indices of `n_centres` distinct rows of `x` chosen by greedy k-means++.

    `xt` (x transposed, C-contiguous) and `x_sq` (squared row norms) may be passed to avoid recomputing
    them. Each new centre is the best (lowest resulting potential) of `n_local_trials` candidates sampled
    with probability proportional to the squared distance to the nearest chosen centre. When every
    remaining row coincides with a chosen one (zero potential), the next index is drawn uniformly
    from the unchosen rows, so indices are always distinct.
    """
    n = x.shape[0]
    if not 1 <= n_centres <= n:
        raise ValueError(f"n_centres={n_centres} must be between 1 and the number of rows {n}.")
    if xt is None:
        xt = transposed(x)
    if x_sq is None:
        x_sq = row_sq_norms(x)
    trials = n_local_trials or 2 + int(np.log(n_centres))
    chosen = np.empty(n_centres, dtype=np.intp)
    taken = np.zeros(n, dtype=bool)
    chosen[0] = rng.integers(n)
    taken[chosen[0]] = True
    closest = sq_dist_to_points(xt, x[chosen[:1]], x_sq)[0]
    closest[chosen[0]] = 0
    for c in range(1, n_centres):
        cumulative = np.cumsum(closest, dtype=np.float64)
        pick = -1
        if cumulative[-1] > 0.0:
            draws = rng.random(trials) * cumulative[-1]
            candidates = np.minimum(np.searchsorted(cumulative, draws, side="right"), n - 1)
            dist = sq_dist_to_points(xt, x[candidates], x_sq)
            np.minimum(dist, closest, out=dist)
            best = int(np.argmin(dist.sum(axis=1, dtype=np.float64)))
            if not taken[candidates[best]]:  # a taken row has zero weight; guard against round-off anyway
                pick = int(candidates[best])
                closest = dist[best]
        if pick < 0:
            pick = int(rng.choice(np.flatnonzero(~taken)))
            np.minimum(closest, sq_dist_to_points(xt, x[pick : pick + 1], x_sq)[0], out=closest)
        chosen[c] = pick
        taken[pick] = True
        closest[pick] = 0
    return chosen
