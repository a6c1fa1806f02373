"""The result type every clustering algorithm returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClusteringResult:
    """One clustering of N items into K clusters.

    `objective` is the sum over items of the squared Euclidean distance to the assigned centroid
    (metric="euclidean"), of 1 - cosine similarity (metric="cosine"), or of the squared residual to
    the assigned affine subspace (k-subspaces). Lower is better; comparable only for the same data,
    metric and K.
    """

    labels: np.ndarray  # int32, shape (N,); every cluster has at least one member
    centroids: np.ndarray  # float64, shape (K, dim); cluster means (unit-norm for cosine)
    objective: float
    n_iter: int  # Lloyd (or k-subspaces) iterations run
    converged: bool  # stopped on unchanged labels / small shift rather than max_iter
    metric: str
    seed: int
    summaries: list[str] | None = None  # last LLM round's summary per cluster (k-LLMmeans only)
    summary_centroids: np.ndarray | None = None  # (K, dim) projected embeddings of `summaries`
    n_summarize_calls: int = 0
    bases: np.ndarray | None = None  # (K, rank_r, dim) orthonormal subspace directions (k-subspaces only)

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def sizes(self) -> np.ndarray:
        """Members per cluster (int64, shape (K,))."""
        return np.bincount(self.labels, minlength=self.k)
