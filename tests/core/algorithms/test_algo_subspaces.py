"""k_subspaces: recovery of affine subspaces, guards and validation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from studyllm_core.algorithms import k_llmmeans, k_subspaces


def best_of(x, k, rank, seeds=(0, 1, 2)):
    return min((k_subspaces(x, k, rank, seed) for seed in seeds), key=lambda r: r.objective)


@pytest.mark.parametrize(("d", "rank"), [(5, 1), (10, 2)])
def test_recovers_crossing_flats(flats, d, rank):
    x, truth = flats(200, 3, d, rank, seed=0, offset=1.0)
    result = best_of(x, 3, rank)
    assert adjusted_rand_score(truth, result.labels) > 0.95
    # Long flats that nearly cross: k-means cuts them across instead.
    assert adjusted_rand_score(truth, k_llmmeans(x, None, 3, metric="euclidean").labels) < 0.6


def test_result_holds_orthonormal_bases(flats):
    x, _ = flats(150, 2, 6, 2, seed=1)
    result = k_subspaces(x, 2, 2, seed=0)
    assert result.bases.shape == (2, 2, 6) and result.centroids.shape == (2, 6)
    for basis in result.bases:
        np.testing.assert_allclose(basis @ basis.T, np.eye(2), atol=1e-10)
    assert result.objective < 1.0  # residual noise only (0.02 off-plane)
    assert result.sizes.min() >= 3


def test_deterministic_for_a_seed(flats):
    x, _ = flats(120, 3, 5, 1, seed=2)
    a, b = k_subspaces(x, 3, 1, seed=5), k_subspaces(x, 3, 1, seed=5)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.objective == b.objective


def test_rank_zero_is_kmeans(blobs):
    x, truth = blobs(600, 3, 4, seed=3)
    assert adjusted_rand_score(truth, k_subspaces(x, 3, 0, seed=0).labels) > 0.95


def test_small_clusters_are_refilled():
    # 40 points on a line plus 3 stray points: every one of 5 rank-2 clusters keeps >= 3 members.
    rng = np.random.default_rng(0)
    x = np.vstack([np.outer(np.linspace(-5, 5, 40), [1, 0, 0, 0]), rng.normal(size=(3, 4))])
    result = k_subspaces(x, 5, 2, seed=0)
    assert result.sizes.min() >= 3 and np.isfinite(result.objective)


@pytest.mark.parametrize(
    ("k", "rank", "message"),
    [
        (1, 1, "K=1 is too small"),
        (31, 0, "exceeds the number of items N=30"),
        (2, 4, "rank_r=4 must be below the dimension d=4"),
        (8, 3, "K x \\(rank_r \\+ 1\\) = 32 exceeds N=30"),
    ],
)
def test_invalid_arguments_raise(k, rank, message):
    with pytest.raises(ValueError, match=message):
        k_subspaces(np.random.default_rng(0).normal(size=(30, 4)), k, rank)
