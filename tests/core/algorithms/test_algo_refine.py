"""The large-N refinement (kmeans.refine): a k-means fit on a sample carried to every row by Lloyd passes,
stopped once a pass gains little (rel_tol), on rows prepared once for all the K of a sweep."""

from __future__ import annotations

import numpy as np
import pytest

from studyllm_core.algorithms import SweepConfig, run_sweep
from studyllm_core.algorithms import sweep as sweep_module
from studyllm_core.algorithms.kmeans import k_llmmeans, refine, refine_costs, refine_rows
from studyllm_core.algorithms.lloyd import Lloyd
from studyllm_core.algorithms.metrics import item_costs

LARGE = dict(large_n=300, fit_sample_size=200, criteria_sample_size=150, silhouette_sample_size=100)


def overlapping(n: int = 5000, k: int = 6, d: int = 10, seed: int = 3) -> np.ndarray:
    """Blobs that overlap, so Lloyd from a sample's centroids keeps moving for several passes on all rows."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * 1.5
    return (centres[np.arange(n) % k] + rng.normal(size=(n, d))).astype(np.float32)


def start_objective(z: np.ndarray, centroids: np.ndarray, metric: str) -> float:
    """The objective over all rows of the sample's centroids, every row at its nearest: where refine starts."""
    x = z / np.linalg.norm(z, axis=1, keepdims=True) if metric == "cosine" else z.astype(np.float64)
    c = centroids / np.linalg.norm(centroids, axis=1, keepdims=True) if metric == "cosine" else centroids
    sq = ((x[:, None, :] - c[None, :, :]) ** 2).sum(axis=2).min(axis=1)
    return float(0.5 * sq.sum() if metric == "cosine" else sq.sum())


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_the_stop_rule_keeps_the_objective_near_the_full_refinement_and_never_above_the_start(metric):
    z = overlapping()
    sample = k_llmmeans(z[np.random.default_rng(1).choice(len(z), 300, replace=False)], None, 6, metric=metric, seed=2)
    full = refine(sample, z, max_iter=300)  # Lloyd to convergence on every row
    early = refine(sample, z, max_iter=10, rel_tol=1e-4)
    start = start_objective(z, sample.centroids, metric)
    assert early.n_iter - sample.n_iter < full.n_iter - sample.n_iter  # the rule stopped before convergence
    assert early.objective <= start * (1 + 1e-9)  # never worse than where it started
    assert full.objective <= early.objective <= full.objective * (1 + 1e-4)  # within 0.01% of the full refinement
    assert early.labels.shape == (len(z),) and np.bincount(early.labels, minlength=6).min() > 0


def test_rel_tol_zero_runs_every_pass_and_bad_rel_tol_is_refused():
    z = overlapping(n=3000)
    sample = k_llmmeans(z[:300], None, 8, seed=0)
    assert refine(sample, z, max_iter=4).n_iter - sample.n_iter == 4
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="rel_tol"):
            refine(sample, z, rel_tol=bad)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_the_objective_at_the_means_from_the_sums_is_the_objective(metric):
    """Lloyd.mean_objective (what the stop rule compares, from the cluster sums alone) equals the objective
    computed item by item whenever the centroids are their members' means (after a Lloyd step)."""
    rows = refine_rows(overlapping(n=2000), metric)
    state = Lloyd(rows.x, 5, metric == "cosine", 0.0, rows=rows)
    state.set_centroids(rows.x[:5])
    for _ in range(4):
        state.run(1)
        assert state.mean_objective() == pytest.approx(state.objective(), rel=1e-6)


def test_prepared_rows_give_the_refinement_of_the_matrix_itself():
    z = overlapping(n=3000)
    sample = k_llmmeans(z[:300], None, 8, seed=0)
    rows = refine_rows(z, "cosine")
    a, b = refine(sample, z, max_iter=10, rel_tol=1e-4), refine(sample, rows, max_iter=10, rel_tol=1e-4)
    assert np.array_equal(a.labels, b.labels) and a.objective == b.objective and len(rows) == len(z)
    assert np.allclose(rows.x, z / np.linalg.norm(z, axis=1, keepdims=True), atol=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_the_refinements_costs_are_the_item_costs_and_sum_to_its_objective(metric):
    z = overlapping(n=3000)
    sample = k_llmmeans(z[:300], None, 6, seed=0, metric=metric)
    refined, costs = refine_costs(sample, z, max_iter=10, rel_tol=1e-4)
    assert np.allclose(costs, item_costs(z, refined.labels, refined.centroids, metric), rtol=1e-5, atol=1e-6)
    squared = costs if metric == "cosine" else costs**2
    assert squared.sum() == pytest.approx(refined.objective, rel=1e-12)
    assert refine(sample, z, max_iter=10, rel_tol=1e-4).objective == refined.objective


def test_a_sweep_prepares_its_rows_once_and_says_how_it_refined(monkeypatch):
    z = overlapping(n=900, k=4)
    calls = []
    real = sweep_module.refine_rows
    monkeypatch.setattr(sweep_module, "refine_rows", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    config = SweepConfig(k_min=3, k_max=5, n_restarts=2, **LARGE)
    messages: list[str] = []
    result = run_sweep(z, None, config, progress=messages.append)
    assert len(calls) == 1  # once for the three K
    plan = result.to_dict()["plan"]
    assert "until a pass lowers the objective by at most 0.0001 of it" in plan["text"] and plan["refine_tol"] == 1e-4
    passes = [row["refine_passes"] for row in result.to_dict()["per_k"]]
    assert all(1 <= p <= config.refine_iter for p in passes)
    for message, p in zip(messages[1:], passes):  # each K's progress line says it too
        assert f", refined by {p} Lloyd pass{'es' if p != 1 else ''} over all N" in message
    every = run_sweep(z, None, SweepConfig(k_min=3, k_max=5, n_restarts=2, refine_tol=0.0, **LARGE))
    assert "until a pass" not in every.plan.describe()
    every_passes = [row["refine_passes"] for row in every.to_dict()["per_k"]]
    assert all(e >= p for e, p in zip(every_passes, passes)) and sum(every_passes) > sum(passes)


def test_small_sweeps_do_not_refine():
    z = overlapping(n=250, k=3)
    messages: list[str] = []
    result = run_sweep(z, None, SweepConfig(k_min=2, k_max=3, n_restarts=2, large_n=300), progress=messages.append)
    assert all(row["refine_passes"] is None for row in result.to_dict()["per_k"])
    assert not any("refined" in message for message in messages)


@pytest.mark.parametrize("bad", [-1e-4, 1.0, "0.1"])
def test_bad_refine_tol_is_refused(bad):
    with pytest.raises(ValueError, match="refine_tol"):
        SweepConfig(refine_tol=bad).validate()


def test_every_sweep_runs_on_one_blas_thread_and_gives_the_caller_its_threads_back(monkeypatch):
    """Every step of the K loop and the second pass runs with one BLAS thread, at large N (the restarts,
    breathing and K criteria on samples, the passes over all rows: refinement, scores, the second pass's
    neighbour fits and refinement) and at small N (all rows everywhere, no refinement), scipy's own OpenBLAS
    included when the first K is what loads it (threadpoolctl limits the libraries loaded when the limit
    starts; run alone, this test is the one that loads it); the caller's setting is back after each."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from studyllm_core.algorithms import focus as focus_module

    def blas_threads() -> set[int]:
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    seen: dict[str, set[int]] = {name: set() for name in ("fit", "breathe", "criteria", "refine", "score", "pass",
                                                          "neighbours")}
    for module, name, attr in ((sweep_module, "fit", "k_llmmeans"), (sweep_module, "breathe", "breathe"),
                               (sweep_module, "criteria", "selection_criteria"), (sweep_module, "refine", "refine_costs"),
                               (sweep_module, "score", "score_k"), (focus_module, "pass", "refine"),
                               (focus_module, "neighbours", "_neighbour_pass")):
        real = getattr(module, attr)
        monkeypatch.setattr(module, attr,
                            lambda *a, _real=real, _name=name, **kw: seen[_name].update(blas_threads()) or _real(*a, **kw))
    monkeypatch.setattr(focus_module, "GAIN", -1.0)  # every neighbour's fit is taken: the pass refines on all rows
    z = overlapping(n=900, k=4)
    with threadpool_limits(2, user_api="blas"):
        assert blas_threads() == {2}
        run_sweep(z, None, SweepConfig(k_min=3, k_max=5, n_restarts=2, **LARGE))
        assert seen == {name: {1} for name in seen}
        assert blas_threads() == {2}
        for found in seen.values():
            found.clear()
        run_sweep(z[:250], None, SweepConfig(k_min=3, k_max=5, n_restarts=2, large_n=300))
        assert not seen["refine"] and not seen["pass"]  # small N: no refinement over all rows
        assert {name: found for name, found in seen.items() if found} == {
            name: {1} for name in ("fit", "breathe", "criteria", "score", "neighbours")}
        assert blas_threads() == {2}
