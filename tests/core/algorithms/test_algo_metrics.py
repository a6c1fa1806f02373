"""Cluster quality metrics, checked on small hand-worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from studyllm_core.algorithms import (
    clustering_accuracy,
    coverage,
    dispersion,
    item_costs,
    label_metrics,
    representatives,
    silhouette,
    stability,
)
from studyllm_core.algorithms.metrics import adjusted_rand, cosine_silhouette_samples


def test_accuracy_is_one_under_a_label_permutation():
    truth = np.array([0, 0, 1, 1, 2, 2, 2])
    permuted = np.array([2, 2, 0, 0, 1, 1, 1])
    assert clustering_accuracy(truth, permuted) == 1.0
    assert label_metrics(truth, permuted) == {"acc": 1.0, "nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}


def test_accuracy_hand_checked():
    # Best matching: cluster 1 -> class 0 (2 items), cluster 0 -> class 1 (2), cluster 2 -> class 2 (1).
    truth = np.array([0, 0, 1, 1, 2, 2])
    labels = np.array([1, 1, 0, 0, 0, 2])
    assert clustering_accuracy(truth, labels) == pytest.approx(5 / 6)
    # More clusters than classes: unmatched clusters count as wrong.
    assert clustering_accuracy(np.array([0, 0, 0, 1]), np.array([0, 1, 2, 3])) == pytest.approx(2 / 4)


def test_label_metrics_hand_checked_ari():
    # Contingency [[2, 0], [1, 1]]: sum C(n_ij,2) = 1, rows 1+1... expected ARI from the formula = 0.
    truth = np.array([0, 0, 1, 1])
    labels = np.array([0, 0, 0, 1])
    metrics = label_metrics(truth, labels)
    index, rows, cols, total = 1, 1 + 1, 3 + 0, 6
    expected = (index - rows * cols / total) / (0.5 * (rows + cols) - rows * cols / total)
    assert metrics["ari"] == pytest.approx(expected)
    assert metrics["acc"] == pytest.approx(3 / 4)


@pytest.mark.parametrize("case", ["random", "permuted", "one cluster each", "all split", "text and gaps", "negative"])
def test_label_metrics_are_scikit_learns(case):
    """ACC, NMI and ARI from one contingency table equal scikit-learn's functions on the labels themselves."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
    from sklearn.metrics.cluster import contingency_matrix

    rng = np.random.default_rng(5)
    truth, labels = {
        "random": (rng.integers(0, 6, 500), rng.integers(0, 9, 500).astype(np.int32)),
        "permuted": (np.array([0, 0, 1, 1, 2]), np.array([2, 2, 0, 0, 1])),
        "one cluster each": (np.zeros(6, int), np.zeros(6, int)),
        "all split": (np.zeros(4, int), np.arange(4)),
        "text and gaps": (np.array(list("aabbcca")), np.array([30, 30, 7, 7, 7, 1, 30])),
        "negative": (np.array([-1, -1, 2, 2, 5]), np.array([0, 1, 0, 1, 1])),
    }[case]
    table = contingency_matrix(truth, labels)
    rows, cols = linear_sum_assignment(table, maximize=True)
    assert label_metrics(truth, labels) == {
        "acc": pytest.approx(table[rows, cols].sum() / table.sum(), abs=1e-12),
        "nmi": pytest.approx(normalized_mutual_info_score(truth, labels), abs=1e-12),
        "ari": pytest.approx(adjusted_rand_score(truth, labels), abs=1e-12),
    }
    assert adjusted_rand(labels, truth) == pytest.approx(adjusted_rand_score(labels, truth), abs=1e-12)


def test_label_metrics_shape_mismatch():
    with pytest.raises(ValueError, match="one label per item"):
        label_metrics(np.zeros(3), np.zeros(4))


def test_silhouette_exact_on_small_data():
    x = np.array([[0.0, 0], [0, 1], [10, 0], [10, 1]])
    labels = np.array([0, 0, 1, 1])
    sil = silhouette(x, labels, metric="euclidean")
    a, b = 1.0, np.mean([10.0, np.hypot(10, 1)])
    assert sil.method == "exact"
    assert sil.value == pytest.approx((b - a) / b)


def test_silhouette_on_large_n_uses_a_seeded_sample(blobs):
    x, truth = blobs(12_000, 3, 4, seed=0)
    sil = silhouette(x, truth, metric="euclidean", sample_size=2000, seed=1)
    assert sil.method == "sample:n=2000"
    assert sil == silhouette(x, truth, metric="euclidean", sample_size=2000, seed=1)
    assert 0.5 < sil.value <= 1


def test_cosine_silhouette_is_scikit_learns_value():
    """The linear-cost cosine silhouette gives scikit-learn's per-item values (round-off only), with a
    cluster of one (silhouette 0), label codes with gaps, unnormalised rows, exact and sampled."""
    from sklearn.metrics import silhouette_samples, silhouette_score

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(5, 6)) * 3
    x = centres[rng.integers(0, 5, 300)] + rng.normal(size=(300, 6))
    labels = rng.integers(0, 5, 300) * 2  # codes 0, 2, ..., 8: not 0..K-1
    labels[17] = 11  # a cluster of one
    expected = silhouette_samples(x, labels, metric="cosine")
    assert expected[17] == 0.0
    assert np.abs(cosine_silhouette_samples(x, labels, block=64) - expected).max() < 1e-12
    assert silhouette(x, labels).value == pytest.approx(silhouette_score(x, labels, metric="cosine"), abs=1e-12)
    index = np.sort(np.random.default_rng(4).choice(300, size=120, replace=False))
    sampled = silhouette(x, labels, sample_size=120, seed=4)
    assert sampled.method == "sample:n=120"
    assert sampled.value == pytest.approx(silhouette_score(x[index], labels[index], metric="cosine"), abs=1e-12)


def test_silhouette_undefined_for_one_cluster():
    sil = silhouette(np.random.default_rng(0).normal(size=(10, 2)), np.zeros(10, dtype=int))
    assert np.isnan(sil.value) and sil.method == "exact"


def test_stability_over_restarts():
    a = np.array([0, 0, 1, 1])
    assert stability([a, 1 - a, a]).mean_ari == pytest.approx(1.0)
    assert stability([a, a]).std_ari == 0.0 and stability([a, a]).n_pairs == 1
    mixed = stability([a, np.array([0, 1, 0, 1])])
    assert mixed.mean_ari < 0.5
    assert np.isnan(stability([a]).mean_ari)


def test_coverage_counts_items_in_big_enough_clusters():
    labels = np.array([0] * 6 + [1] * 3 + [2])
    assert coverage(labels, min_size=3) == pytest.approx(0.9)
    assert coverage(labels, min_size=7) == 0.0
    assert coverage(labels, min_size=1) == 1.0


def test_representatives_are_the_cheapest_members_by_cost_then_index():
    """Per cluster the m members of lowest cost, ties by row index, in that order: the same as one sort of
    every item by (cluster, cost, index); with ties at the m-th cost, small clusters and an empty one."""
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 6, 400)
    labels[labels == 5] = 4  # cluster 5 is empty
    labels[np.flatnonzero(labels == 3)[2:]] = 2  # cluster 3 has two members
    costs = rng.integers(0, 4, 400).astype(np.float64)  # many ties
    order = np.lexsort((np.arange(400), costs, labels))
    expected = [[int(i) for i in order[labels[order] == c][:5]] for c in range(6)]
    assert representatives(None, labels, np.zeros((6, 2)), m=5, costs=costs) == expected
    assert expected[5] == [] and len(expected[3]) == 2


def test_dispersion_and_representatives():
    x = np.array([[0.0, 0], [1, 0], [3, 0], [10, 0], [12, 0]])
    labels = np.array([0, 0, 0, 1, 1])
    centroids = np.array([[1.0, 0], [11, 0]])
    assert dispersion(x, labels, centroids, metric="euclidean") == pytest.approx((1 + 0 + 2 + 1 + 1) / 5)
    assert representatives(x, labels, centroids, m=2, metric="euclidean") == [[1, 0], [3, 4]]
    np.testing.assert_allclose(item_costs(x, labels, centroids, metric="euclidean"), [1, 0, 2, 1, 1])
    # cosine: 1 - cos to the centroid direction
    unit = np.array([[1.0, 0], [0, 1]])
    assert dispersion(unit, np.array([0, 0]), np.array([[1.0, 1.0]]), metric="cosine") == pytest.approx(1 - np.sqrt(0.5))
