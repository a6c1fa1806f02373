"""k_subspaces: recovery of affine subspaces, guards and validation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from studyllm_core.algorithms import k_llmmeans, k_subspaces
from support import FakeLLM


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


# -- k-subspaces with summaries (the k-LLMmeans rounds on subspaces) ----------------------------------------


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_summary_rounds_call_the_llm_k_times_rounds_and_recover_the_flats(flats, metric):
    x, truth = flats(200, 3, 6, 1, seed=0, offset=1.0)
    llm = FakeLLM(x)
    result = k_subspaces(x, 3, 1, seed=0, texts=llm.texts, summarize=llm.summarize, embed=llm.embed,
                         llm_rounds=3, iters_per_round=2, samples_per_cluster=7, metric=metric)
    assert len(llm.summarize_inputs) == 3 * 3 == result.n_summarize_calls
    assert len(llm.embed_inputs) == 3 and all(len(batch) == 3 for batch in llm.embed_inputs)
    assert all(len(set(batch)) == 7 for batch in llm.summarize_inputs)  # distinct members
    # The last round's anchors are the (projected, for cosine unit) embeddings of its summaries.
    assert result.summaries == llm.embed_inputs[-1]
    expected = np.stack([llm.vectors[s] for s in result.summaries])
    if metric == "cosine":
        expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(result.summary_centroids, expected)
    plain = k_subspaces(x, 3, 1, seed=0, metric=metric)
    assert adjusted_rand_score(truth, result.labels) >= adjusted_rand_score(truth, plain.labels) - 0.05
    if metric == "euclidean":
        assert adjusted_rand_score(truth, result.labels) > 0.95


def test_summaries_anchor_the_subspaces_and_samples_come_from_one_cluster(flats):
    x, truth = flats(200, 3, 6, 1, seed=3, offset=1.0)
    llm = FakeLLM(x)
    result = k_subspaces(x, 3, 1, seed=0, texts=llm.texts, summarize=llm.summarize, embed=llm.embed,
                         llm_rounds=1, iters_per_round=20, samples_per_cluster=5)
    for batch in llm.summarize_inputs:
        assert len({truth[int(t.split()[1])] for t in batch}) == 1
    rows = [int(s.split()[1]) for s in result.summaries]
    assert sorted(result.labels[rows].tolist()) == [0, 1, 2]  # each summary item lies on its own subspace


def test_summaries_with_the_same_seed_give_the_same_result(flats):
    x, _ = flats(120, 2, 5, 1, seed=4)
    runs = []
    for _ in range(2):
        llm = FakeLLM(x)
        runs.append((k_subspaces(x, 2, 1, seed=5, texts=llm.texts, summarize=llm.summarize, embed=llm.embed,
                                 llm_rounds=2), llm.summarize_inputs))
    np.testing.assert_array_equal(runs[0][0].labels, runs[1][0].labels)
    assert runs[0][1] == runs[1][1]


def test_summary_arguments_are_checked(flats):
    x, _ = flats(60, 2, 5, 1, seed=5)
    llm = FakeLLM(x)
    with pytest.raises(ValueError, match="need both summarize and embed"):
        k_subspaces(x, 2, 1, texts=llm.texts, summarize=llm.summarize)
    with pytest.raises(ValueError, match="texts has 59 entries but the data has 120 rows"):
        k_subspaces(x, 2, 1, texts=llm.texts[:59], summarize=llm.summarize, embed=llm.embed)
    with pytest.raises(ValueError, match="max_iter=4 leaves no iterations"):
        k_subspaces(x, 2, 1, texts=llm.texts, summarize=llm.summarize, embed=llm.embed, max_iter=4)


def test_the_summaries_anchor_the_next_assignment(flats):
    """One iteration, the round, one iteration: summaries embedded far from every flat pull the subspaces
    away, so the items are assigned differently than by two plain iterations."""
    x, truth = flats(200, 3, 6, 1, seed=0, offset=1.0)

    class FarAway(FakeLLM):
        def embed(self, texts: list[str]) -> np.ndarray:
            return np.full_like(super().embed(texts), 1000.0)

    llm = FarAway(x)
    anchored = k_subspaces(x, 3, 1, seed=0, texts=llm.texts, summarize=llm.summarize, embed=llm.embed,
                           llm_rounds=1, iters_per_round=1, max_iter=2)
    plain = k_subspaces(x, 3, 1, seed=0, max_iter=2)
    assert adjusted_rand_score(truth, plain.labels) > 0.95
    assert adjusted_rand_score(truth, anchored.labels) < 0.5
