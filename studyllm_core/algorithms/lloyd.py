"""The Lloyd iteration engine behind k-means / k-LLMmeans.

Each iteration assigns every item to its nearest centroid and moves every centroid to the mean of its
members, exactly as Lloyd's algorithm, but two things keep it cheap on large N:
- Hamerly's bounds (an upper bound on the distance to the own centroid, a lower bound on the distance to
  any other) prove most items cannot change cluster, so only the rest get distances computed (GEMM);
- per-cluster sums are updated incrementally from the items that changed label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .distances import centre_sq_distances, chunk_rows, nearest_two, row_sq_norms, sq_dist_to_assigned, transposed


@dataclass(frozen=True)
class Rows:
    """The rows a Lloyd run iterates over with what every run on them derives from them (transposed copy,
    squared norms, mean feature variance, round-off slack): prepared once (lloyd_rows) and shared by runs
    on the same rows. A large-N sweep refines every K on all N rows; preparing them was a third of each
    refinement at a million rows."""

    x: np.ndarray  # C-contiguous float32/float64, finite (unit rows for spherical runs)
    xt: np.ndarray  # transposed(x)
    x_sq: np.ndarray  # row_sq_norms(x)
    x_sq_total: float  # their sum (float64)
    mean_variance: float  # mean per-feature variance (scales tol)
    slack: np.ndarray  # round-off allowance of the GEMM distance identity, per item (squared-distance units)

    def __len__(self) -> int:
        return int(self.x.shape[0])


def lloyd_rows(x: np.ndarray, *, xt: np.ndarray | None = None, x_sq: np.ndarray | None = None) -> Rows:
    """Rows of `x` (C-contiguous float32/float64, finite) prepared for Lloyd; `xt` / `x_sq` when known."""
    xt = transposed(x) if xt is None else xt  # the fast GEMM layout (see distances.py)
    x_sq = row_sq_norms(x) if x_sq is None else x_sq
    mean = xt.sum(axis=1, dtype=np.float64) / x.shape[0]
    total = float(x_sq.sum(dtype=np.float64))
    mean_variance = max(total / x.shape[0] - float(mean @ mean), 0.0) / x.shape[1]
    slack = 16 * np.finfo(x.dtype).eps * (x_sq.astype(np.float64) + 1.0)
    return Rows(x, xt, x_sq, total, mean_variance, slack)


class Lloyd:
    """State of one Lloyd run over the rows of `x` (C-contiguous float32/float64, finite).

    `spherical=True` keeps centroids unit-norm (spherical k-means, for the cosine metric; rows of `x`
    must already be unit-norm). `tol` follows scikit-learn: it is scaled by the mean feature variance
    and compared with the summed squared centroid shift.
    """

    def __init__(self, x: np.ndarray, k: int, spherical: bool, tol: float, *,
                 xt: np.ndarray | None = None, x_sq: np.ndarray | None = None, rows: Rows | None = None) -> None:
        """`xt` / `x_sq` (transposed(x), row_sq_norms(x)), or all of `rows` (lloyd_rows(x)), may be passed
        to share them between runs on the same rows (breathing k-means runs Lloyd many times with
        different K; a large-N sweep refines every K on the same rows)."""
        rows = lloyd_rows(x, xt=xt, x_sq=x_sq) if rows is None else rows
        self.rows = rows
        self.x, self.xt, self.x_sq = rows.x, rows.xt, rows.x_sq
        self.k = k
        self.spherical = spherical
        self.tol = tol * rows.mean_variance
        self.labels: np.ndarray | None = None
        self.sums = np.zeros((k, x.shape[1]), dtype=np.float64)
        self.counts = np.zeros(k, dtype=np.int64)
        self.centroids = np.empty((k, x.shape[1]), dtype=x.dtype)
        self.consistent = False  # labels are the nearest-centroid labels of the current centroids
        self.anchors: np.ndarray | None = None  # (K, dim) float64: centroids are pulled toward these
        self.anchor_weight = 0.0
        self.upper: np.ndarray | None = None  # >= distance to own centroid (None: bounds unknown)
        self.lower: np.ndarray | None = None  # <= distance to every other centroid
        self._slack = rows.slack

    def set_centroids(self, centroids: np.ndarray) -> None:
        """Replace the centroids (seeding, summary rounds); distance bounds are recomputed from scratch."""
        self.centroids = np.array(centroids, dtype=self.x.dtype, order="C")
        self.consistent = False
        self.upper = self.lower = None

    def anchor(self, anchors: np.ndarray, weight: float) -> None:
        """From now on every centroid update is (1 - weight) x the members' mean + weight x its anchor
        (re-normalised when spherical); the distance bounds stay valid as for any centroid move."""
        self.anchors = np.asarray(anchors, dtype=np.float64)
        self.anchor_weight = float(weight)

    def _bounds_from(self, d1: np.ndarray, d2: np.ndarray, slack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        upper = np.sqrt(d1.astype(np.float64) + slack)
        lower = np.sqrt(np.maximum(d2.astype(np.float64) - slack, 0.0))
        return upper, lower

    def assign(self) -> int:
        """Give every item the label of its nearest centroid; returns how many labels changed.

        An empty cluster is re-seeded with the item farthest (by distance bound) from its own centroid,
        taken from a cluster that keeps at least one member; that item becomes its centroid.
        """
        changed = self._apply(*self._nearest())
        counts = self.counts
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            farthest_first = iter(np.argsort(-self.upper, kind="stable"))
            moved = []
            for cluster in empty:
                item = next(i for i in farthest_first if counts[self.labels[i]] > 1)
                self._apply(np.array([item]), np.array([cluster]))
                self.centroids[cluster] = self.x[item]
                self.upper[item] = 0.0
                moved.append(item)
            changed += len(moved)
            self.lower[:] = 0.0  # a centroid moved outside the bound bookkeeping: recheck everyone once
        return changed

    def _nearest(self) -> tuple[np.ndarray | None, np.ndarray]:
        """(items whose label changes or None for all items, their new labels), keeping the bounds valid.

        Hamerly's test: an item whose upper bound is below both its lower bound and half the distance
        from its centroid to the nearest other centroid keeps its label; the rest get all K distances
        recomputed (Hamerly's extra tightening step costs more than it saves when vectorised)."""
        if self.upper is not None and self.labels is not None:
            between = np.sqrt(np.maximum(centre_sq_distances(self.centroids), 0.0))
            bound = np.maximum((0.5 * between.min(axis=1))[self.labels], self.lower)
            todo = np.flatnonzero(self.upper > bound)
            if todo.size <= self.labels.size // 2:  # else a full pass is cheaper than gathering
                # x[todo].T: a row gather is far cheaper than gathering columns of xt (scattered reads).
                labels, d1, d2 = nearest_two(self.x[todo].T, self.centroids, self.x_sq[todo])
                self.upper[todo], self.lower[todo] = self._bounds_from(d1, d2, self._slack[todo])
                moved = labels != self.labels[todo]
                return todo[moved], labels[moved]
        labels, d1, d2 = nearest_two(self.xt, self.centroids, self.x_sq)
        self.upper, self.lower = self._bounds_from(d1, d2, self._slack)
        if self.labels is None:
            return None, labels
        moved = np.flatnonzero(labels != self.labels)
        return moved, labels[moved]

    def _apply(self, index: np.ndarray | None, new: np.ndarray) -> int:
        """Set labels[index] = new (index None: all items, first assignment), updating the cluster sums
        and counts by the changed items only; returns how many changed.

        The update is the changed rows times a (+1 new cluster, -1 old cluster) one-hot matrix, a GEMM
        over row blocks of bounded size, with block sums in the data dtype accumulated in float64.
        """
        first = index is None
        if first:
            index = np.arange(new.size)
            self.labels = np.empty(new.size, dtype=np.intp)
        old = self.labels[index]
        step = chunk_rows(self.k)
        for start in range(0, index.size, step):
            rows = index[start : start + step]
            columns = np.arange(rows.size)
            onehot = np.zeros((self.k, rows.size), dtype=self.x.dtype)
            onehot[new[start : start + step], columns] = 1
            if not first:
                onehot[old[start : start + step], columns] -= 1
            # (dim x rows) @ (rows x K): OpenBLAS runs this layout several times (up to 50x) faster than
            # onehot @ x[rows] (K x rows @ rows x dim), the same product; the first pass reads slices of xt.
            members = self.xt[:, start : start + step] if first else self.x[rows].T
            self.sums += (members @ onehot.T).T
        self.counts += np.bincount(new, minlength=self.k)
        if not first:
            self.counts -= np.bincount(old, minlength=self.k)
        self.labels[index] = new
        return int(index.size)

    def _means(self) -> np.ndarray:
        means = self.sums / self.counts[:, None]
        if self.spherical:
            norms = np.linalg.norm(means, axis=1)
            # A cluster whose unit vectors cancel out has no mean direction: keep its centroid.
            degenerate = norms <= 1e-12
            means[degenerate] = self.centroids[degenerate]
            norms[degenerate] = np.linalg.norm(means[degenerate], axis=1)
            means /= norms[:, None]
        if self.anchors is not None:
            means = self.anchor_weight * self.anchors + (1.0 - self.anchor_weight) * means
            if self.spherical:  # anchor and mean pointing opposite ways: keep the anchor's direction
                norms = np.linalg.norm(means, axis=1)
                means[norms <= 1e-12] = self.anchors[norms <= 1e-12]
                means /= np.linalg.norm(means, axis=1)[:, None]
        return means.astype(self.x.dtype)

    def _move_centroids(self, new: np.ndarray) -> float:
        """Move to `new` centroids, loosening the bounds by how far each centroid moved; returns the
        summed squared shift."""
        moved = np.sqrt(np.sum((new.astype(np.float64) - self.centroids) ** 2, axis=1))
        self.centroids = new
        if self.upper is not None:
            top = int(np.argmax(moved))
            runner_up = np.max(np.delete(moved, top))
            self.upper += moved[self.labels]
            self.lower -= moved[top]
            self.lower[self.labels == top] += moved[top] - runner_up
        return float(np.sum(moved**2))

    def run(self, max_steps: int, rel_tol: float = 0.0) -> tuple[int, bool]:
        """Up to `max_steps` Lloyd iterations; stops on unchanged labels or centroid shift <= tol, and
        with rel_tol > 0 also when an iteration lowered the objective at the means (mean_objective) by
        at most rel_tol times its value (a refinement from centroids converged on a sample gains a
        relative 1e-6 per pass after its second at a million rows: docs/architecture.md)."""
        previous = None
        for step in range(1, max_steps + 1):
            changed = self.assign()
            shift = self._move_centroids(self._means())
            # Unchanged labels leave the sums untouched, so the means are bitwise the previous ones
            # (shift 0) unless the previous centroids were set from outside; only then are labels consistent.
            self.consistent = changed == 0 and shift == 0.0
            if changed == 0 or shift <= self.tol:
                return step, True
            if rel_tol > 0:
                current = self.mean_objective()
                if previous is not None and previous - current <= rel_tol * abs(current):
                    return step, True
                previous = current
        return max_steps, False

    def mean_objective(self) -> float:
        """The objective of the current labels with every centroid at its members' mean, from the cluster
        sums alone (no pass over the items): sum of 1 - cos is N - sum of |S_c| (spherical), the squared
        distances sum |x|^2 - sum of |S_c|^2 / n_c (Euclidean). Lloyd never raises it; the sums are
        updated incrementally, so consecutive values differ by the changed items' effect only."""
        if self.spherical:
            return float(self.counts.sum() - np.linalg.norm(self.sums, axis=1).sum())
        return float(self.rows.x_sq_total - (np.sum(self.sums**2, axis=1) / np.maximum(self.counts, 1)).sum())

    def settle(self) -> None:
        """Make labels the nearest-centroid labels of the current centroids (no centroid update)."""
        if not self.consistent:
            self.assign()
            self.consistent = True

    def objective(self) -> float:
        """Sum of squared distances to the assigned centroids (for unit vectors: sum of 1 - cos)."""
        sq = float(sq_dist_to_assigned(self.x, self.centroids, self.labels).sum())
        return 0.5 * sq if self.spherical else sq  # unit vectors: 1 - cos = ||a - b||^2 / 2
