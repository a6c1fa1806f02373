"""Breathing k-means (algorithms/breathing.py) and its place in cluster_restarts: it escapes the local
optimum the restarts leave on overlapping blobs, is deterministic, never worse than its start, runs
only where it is asked for and said, and with summaries gives the summary rounds their start."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from studyllm_core.algorithms import SweepConfig, cluster_restarts, k_llmmeans, run_sweep
from studyllm_core.algorithms.breathing import breathe
from studyllm_core.algorithms.lloyd import Lloyd
from support import FakeLLM


def sibling_blobs(k: int = 20, parents: int = 5, dim: int = 8, min_size: int = 30, spread: float = 0.3,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around k means grouped under `parents` topics (each at cosine 0.75 to its parent,
    so siblings overlap), Dirichlet(0.7) sizes of at least min_size: k-means++ restarts put two
    centroids in one big blob and one across two siblings."""
    rng = np.random.default_rng(seed)
    tops = rng.normal(size=(parents, dim))
    tops /= np.linalg.norm(tops, axis=1, keepdims=True)
    parent = tops[np.arange(k) % parents]
    side = rng.normal(size=(k, dim))
    side -= np.sum(side * parent, axis=1, keepdims=True) * parent
    means = 0.75 * parent + np.sqrt(1 - 0.75**2) * side / np.linalg.norm(side, axis=1, keepdims=True)
    sizes = min_size + rng.multinomial(k * min_size, rng.dirichlet(np.full(k, 0.7)))
    labels = np.repeat(np.arange(k), sizes)
    x = means[labels] + rng.normal(size=(labels.size, dim)) * spread / np.sqrt(dim)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def truth_objective(x: np.ndarray, truth: np.ndarray, metric: str) -> float:
    """The objective of the optimum Lloyd keeps when started from the true class means."""
    k = truth.max() + 1
    state = Lloyd(x, k, metric == "cosine", 1e-4)
    means = np.vstack([x[truth == c].mean(axis=0) for c in range(k)])
    if metric == "cosine":
        means /= np.linalg.norm(means, axis=1, keepdims=True)
    state.set_centroids(means)
    state.run(300)
    state.settle()
    return state.objective()


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_reaches_the_true_partitions_objective_where_restarts_do_not(metric):
    x, truth = sibling_blobs()
    target = truth_objective(x, truth, metric)
    for seed in range(3):
        restarts = cluster_restarts(x, None, 20, SweepConfig(k_min=2, k_max=20, seed=seed, metric=metric,
                                                             breathing=False))
        start = restarts.chosen
        assert start.objective > 1.01 * target  # best of 5 k-means++ restarts: stuck 2-5% above
        result, report = breathe(x, start)
        assert result.objective <= target * (1 + 1e-3)
        assert report.objective_before == start.objective and report.objective_after == result.objective
        assert report.kept >= 1 and report.cycles >= report.kept + 3  # m = 6, 3, 1 fail before the end
        own = np.sum((x - result.centroids[result.labels]) ** 2) * (0.5 if metric == "cosine" else 1.0)
        assert result.objective == pytest.approx(own, rel=1e-6)
        assert np.bincount(result.labels, minlength=20).min() > 0 and result.k == 20


def test_same_start_same_result_and_never_worse():
    x, _ = sibling_blobs(seed=1)
    for seed in range(4):
        start = cluster_restarts(x, None, 20, SweepConfig(k_min=2, k_max=20, seed=seed, n_restarts=1,
                                                          breathing=False)).chosen
        a, report_a = breathe(x, start)
        b, report_b = breathe(x, start)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.centroids, b.centroids)
        assert report_a == report_b
        assert a.objective <= start.objective and a.seed == start.seed


def test_an_optimal_start_is_returned_as_it_is():
    x, truth = sibling_blobs(k=4, parents=4, min_size=60, spread=0.1, seed=2)  # four clear blobs
    start = cluster_restarts(x, None, 4, SweepConfig(k_min=2, k_max=4, breathing=False)).chosen
    result, report = breathe(x, start)
    assert result is start and report.kept == 0 and report.cycles == 3  # m = 4, 2, 1: none kept
    one, report = breathe(x, cluster_restarts(x, None, 2, SweepConfig(k_min=2, k_max=2, breathing=False)).chosen, depth=0)
    assert report.cycles == 0


def test_cluster_restarts_breathes_on_the_chosen_restart_by_default_and_not_when_off():
    x, truth = sibling_blobs(seed=0)
    plain = cluster_restarts(x, None, 20, SweepConfig(k_min=2, k_max=20, breathing=False))
    breathed = cluster_restarts(x, None, 20, SweepConfig(k_min=2, k_max=20))
    assert plain.breathing is None and breathed.breathing is not None
    for a, b in zip(plain.runs, breathed.runs):  # the restarts (and their stability) are unchanged
        np.testing.assert_array_equal(a.labels, b.labels)
    assert breathed.best == plain.best
    assert breathed.breathing.objective_before == plain.chosen.objective
    assert breathed.chosen.objective == breathed.breathing.objective_after < plain.chosen.objective


def test_with_summaries_the_rounds_start_from_the_breathed_restart():
    """summarize_restarts="best": the best restart is breathed and the summary rounds start from its
    centroids (the same calls as without breathing); with "all" every restart stays k-LLMmeans' own."""
    x, _ = sibling_blobs(seed=0)
    config = SweepConfig(k_min=2, k_max=20, n_restarts=2)  # breathing on by default
    runs = {}
    for breathing in (False, True):
        llm = FakeLLM(x)
        runs[breathing] = cluster_restarts(x, llm.texts, 20, replace(config, breathing=breathing),
                                           summarize=llm.summarize, embed=llm.embed)
    plain, breathed = runs[False], runs[True]
    assert plain.breathing is None
    best = breathed.runs[breathed.best]
    assert breathed.breathing.objective_before == best.objective
    assert breathed.breathing.objective_after < best.objective  # the restart was improved
    assert breathed.n_summarize_calls == plain.n_summarize_calls
    start, _ = breathe(x, best)
    llm = FakeLLM(x)
    expected = k_llmmeans(x, llm.texts, 20, summarize=llm.summarize, embed=llm.embed, llm_rounds=config.llm_rounds,
                          samples_per_cluster=config.samples_per_cluster, seed=breathed.seeds[breathed.best],
                          init=start.centroids)
    np.testing.assert_array_equal(breathed.chosen.labels, expected.labels)
    assert breathed.chosen.summaries == expected.summaries
    assert not np.array_equal(breathed.chosen.labels, plain.chosen.labels)

    llm = FakeLLM(x)
    each = cluster_restarts(x, llm.texts, 20, replace(config, summarize_restarts="all"),
                            summarize=llm.summarize, embed=llm.embed)
    assert each.breathing is None and each.chosen is each.runs[each.best]


def test_k_llmmeans_starts_from_given_centroids_and_refuses_bad_ones():
    x, _ = sibling_blobs(seed=1)
    seeded = k_llmmeans(x, None, 20, seed=3)
    again = k_llmmeans(x, None, 20, seed=9, init=seeded.centroids)  # a converged start stays where it is
    np.testing.assert_array_equal(again.labels, seeded.labels)
    assert again.n_iter == 1
    for bad in (seeded.centroids[:19], np.full_like(seeded.centroids, np.nan), np.zeros_like(seeded.centroids)):
        with pytest.raises(ValueError, match="init|all-zero"):
            k_llmmeans(x, None, 20, init=bad)


def test_at_large_n_it_runs_on_the_fit_sample_before_the_refinement():
    x, truth = sibling_blobs(seed=0)
    rows = np.sort(np.random.default_rng(0).choice(len(x), size=900, replace=False))
    config = SweepConfig(k_min=2, k_max=20, breathing=True)
    result = cluster_restarts(x, None, 20, config, fit_rows=rows)
    assert result.runs[result.best].labels.shape == (900,)
    assert result.breathing.objective_before == result.runs[result.best].objective  # the sample's objective
    assert result.chosen.labels.shape == (len(x),)  # then refined on every row


def test_the_plan_says_it_runs_and_the_depth_is_validated(directions):
    x, truth = directions(300, 3, 8, seed=1)
    messages: list[str] = []
    result = run_sweep(x, None, SweepConfig(k_min=2, k_max=4, n_restarts=2, breathing=True), labels=truth,
                       progress=messages.append)
    assert "breathing k-means (depth max(5, K // 3)) on each K's best restart" in messages[0]
    assert result.to_dict()["plan"]["breathing"]
    assert all(item.restarts.breathing is not None for item in result.per_k)
    off = run_sweep(x, None, SweepConfig(k_min=2, k_max=3, n_restarts=2, breathing=False), labels=truth)
    assert "breathing" not in off.plan.describe() and not off.to_dict()["plan"]["breathing"]
    with pytest.raises(ValueError, match="breathing_depth"):
        SweepConfig(breathing=True, breathing_depth=0).validate()


def test_breathing_out_never_removes_both_of_two_close_centroids():
    from studyllm_core.algorithms.breathing import _breathe_out
    from studyllm_core.algorithms.distances import row_sq_norms, transposed

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.vstack([c + rng.normal(size=(200, 2)) for c in centres])
    # blob 0 holds two nearly coincident centroids (the lowest utilities), blob 1 two a little apart
    centroids = np.array([[0.0, 0.005], [0.0, -0.005], [10.0, 0.05], [10.0, -0.05], [0.0, 10.0]])
    kept = _breathe_out(transposed(x), row_sq_norms(x), centroids, 2)
    assert kept.shape == (3, 2)
    nearest = np.argmin(((centres[:, None, :] - kept[None]) ** 2).sum(axis=2), axis=0)
    assert sorted(nearest) == [0, 1, 2]  # every blob keeps a centroid
