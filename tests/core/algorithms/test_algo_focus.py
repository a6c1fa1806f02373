"""The sweep's second pass (algorithms/focus.py): the K near the first choice re-optimised from their
neighbours' solutions, never worse than the sweep's; the rule applied once more; the report says so;
the same input and seed give the same K; edges of the range and ranges of 1-2 K are handled."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from studyllm_core.algorithms import SweepConfig, run_sweep
from studyllm_core.algorithms.breathing import resize
from studyllm_core.algorithms.focus import focus_ks, refocus, reoptimise
from studyllm_core.algorithms.kmeans import k_llmmeans, refine
from studyllm_core.algorithms.kselection import mixture_bic
from studyllm_core.algorithms.results import ClusteringResult
from test_algo_breathing import sibling_blobs


def lloyd_from(x: np.ndarray, centroids: np.ndarray, metric: str = "cosine") -> ClusteringResult:
    """Lloyd to convergence from the given centroids."""
    start = ClusteringResult(labels=np.zeros(len(x), dtype=np.int32), centroids=np.asarray(centroids, dtype=np.float64),
                             objective=np.inf, n_iter=0, converged=False, metric=metric, seed=7)
    return refine(start, x, max_iter=300)


def fits(x: np.ndarray, ks: list[int], seed: int = 0) -> dict[int, ClusteringResult]:
    return {k: min((k_llmmeans(x, None, k, seed=seed * 100 + r) for r in range(3)), key=lambda f: f.objective)
            for k in ks}


def test_resize_grows_and_shrinks_to_k():
    x, _ = sibling_blobs(k=10)
    start = k_llmmeans(x, None, 10, seed=1)
    grown = resize(x, start, 12)
    assert grown.k == 12 and grown.labels.max() == 11 and grown.objective <= start.objective
    shrunk = resize(x, start, 8)
    assert shrunk.k == 8 and shrunk.labels.max() <= 7 and shrunk.labels.shape == start.labels.shape
    assert resize(x, start, 12).objective == grown.objective  # deterministic
    with pytest.raises(ValueError, match="exceeds"):
        resize(x, start, len(x) + 1)


def test_a_k_stuck_above_its_neighbours_optimum_is_repaired_and_no_k_gets_worse():
    x, _ = sibling_blobs(k=10)
    chosen = fits(x, [8, 9, 10, 11, 12])
    # K=11 started with every centroid inside one blob: a local optimum worse than K=10's
    members = np.flatnonzero(np.argmax(x @ chosen[10].centroids.T, axis=1) == 0)[:11]
    chosen[11] = lloyd_from(x, x[members])
    assert chosen[11].objective > chosen[10].objective  # provably not the optimum at K=11
    after = reoptimise(x, chosen, [9, 10, 11])
    assert after[11].objective < chosen[11].objective
    assert after[11].objective <= after[10].objective
    for k in chosen:
        assert after[k].objective <= chosen[k].objective
        assert after[k].k == k and after[k].labels.shape == (len(x),)
    assert after[8] is chosen[8] and after[12] is chosen[12]  # outside the window: untouched


def test_a_fit_from_a_bad_neighbour_never_replaces_a_better_k():
    x, truth = sibling_blobs(k=10)
    means = np.vstack([x[truth == c].mean(axis=0) for c in range(10)])
    chosen = {10: lloyd_from(x, means / np.linalg.norm(means, axis=1, keepdims=True))}  # the true partition's optimum
    inside = np.flatnonzero(truth == np.argmax(np.bincount(truth)))
    for k in (9, 11):  # neighbours with every centroid started in the largest blob
        chosen[k] = lloyd_from(x, x[inside[:k]])
    after = reoptimise(x, chosen, [10])
    assert after[10].objective <= chosen[10].objective
    assert after[9] is chosen[9] and after[11] is chosen[11]


def test_at_large_n_the_pass_runs_on_the_fit_sample_and_keeps_only_what_all_rows_confirm():
    from studyllm_core.algorithms.sweep import sweep_plan

    x, _ = sibling_blobs(k=10)
    plan = sweep_plan(len(x), SweepConfig(large_n=200, fit_sample_size=300, seed=1))
    assert plan.large and plan.fit_rows.size == 300
    chosen = {k: refine(fit, x) for k, fit in fits(x[plan.fit_rows], [9, 10, 11]).items()}  # as the sweep hands them over
    members = np.flatnonzero(np.argmax(x @ chosen[10].centroids.T, axis=1) == 0)[:11]
    chosen[11] = lloyd_from(x, x[members])
    after = reoptimise(x, chosen, [10, 11], plan=plan)
    assert after[11].objective < chosen[11].objective and after[11].labels.shape == (len(x),)
    assert after[11].objective == pytest.approx(lloyd_from(x, after[11].centroids).objective, rel=1e-3)  # over all rows
    for k in chosen:
        assert after[k].objective <= chosen[k].objective


def test_focus_window_and_its_edges():
    ks = list(range(5, 16))
    assert focus_ks(10, ks) == [8, 9, 10, 11, 12]
    assert focus_ks(9, ks) == [7, 8, 9, 10, 11]  # 20% of 9 rounded up
    assert focus_ks(15, ks) == [12, 13, 14, 15]  # at the top of the range: the side that exists
    assert focus_ks(5, ks) == [5, 6]
    assert focus_ks(40, [20, 40, 60]) == [20, 40, 60]  # a coarse grid: at least the swept neighbours
    assert focus_ks(3, [3]) == [3]
    assert focus_ks(3, [3, 4]) == [3, 4]
    with pytest.raises(ValueError, match="not swept"):
        focus_ks(17, ks)


def sweep(seed: int = 0, **options) -> object:
    x, _ = sibling_blobs(k=10, dim=8)
    config = SweepConfig(k_min=options.pop("k_min", 6), k_max=options.pop("k_max", 14), seed=seed, **options)
    return x, run_sweep(x, None, config)


def test_the_report_says_the_pass_ran_which_k_it_touched_and_the_rule_says_so():
    x, result = sweep()
    choice = result.choice
    done = choice.details["second_pass"]
    assert done["skipped"] is None and done["first_k"] is not None
    assert done["improved"]  # seed 0: K=8 improves from K=9's solution
    assert done["ks"] == focus_ks(done["first_k"], list(range(6, 15)))
    assert any(note.startswith("second pass re-optimised K ") for note in choice.notes)
    assert "applied once more" in result.rule
    assert choice.to_dict()["second_pass"]["ks"] == done["ks"]  # reaches the JSON report
    for k, (before, after) in done["improved"].items():
        assert after < before
        item = result.result_for(int(k))
        assert item.clustering.objective == after  # the per-K result is the improved one, rescored
        row = item.scores.to_row()
        assert row["objective"] == after
        assert row["bic"] == pytest.approx(mixture_bic(x / np.linalg.norm(x, axis=1, keepdims=True),
                                                       item.clustering.labels, int(k)))


def test_same_input_and_seed_give_the_same_k_and_pass():
    _, first = sweep(seed=3)
    _, again = sweep(seed=3)
    assert first.best_k == again.best_k and first.best_k is not None
    assert first.choice.to_dict() == again.choice.to_dict()
    for a, b in zip(first.per_k, again.per_k, strict=True):
        np.testing.assert_array_equal(a.clustering.labels, b.clustering.labels)


def test_a_range_of_two_k_is_undecided_and_the_pass_says_it_did_not_run():
    _, result = sweep(k_min=9, k_max=10)
    assert result.best_k is None
    assert result.choice.details["second_pass"]["skipped"] == "the rule could not decide"
    assert any(note.startswith("second pass not run") for note in result.choice.notes)


def test_not_run_with_summaries_or_when_turned_off():
    x, result = sweep()
    items, choice = refocus(x, result.per_k, result.config, use_llm=True)
    assert choice.details["second_pass"]["skipped"].startswith("the clusterings are k-LLMmeans'")
    assert [i.clustering for i in items] == [i.clustering for i in sorted(result.per_k, key=lambda i: i.k)]
    _, plain = sweep(breathing=False)  # the pass does not need breathing
    assert plain.choice.details["second_pass"]["skipped"] is None
    _, off = sweep(refocus=False)
    assert off.choice.details["second_pass"]["skipped"].startswith("turned off")
    assert off.choice.details["second_pass"]["ks"] == []


def test_a_choice_at_the_edge_of_the_range_focuses_on_the_side_that_exists():
    x, result = sweep(k_min=4, k_max=7)  # 10 blobs: the choice sits at or near the top
    done = result.choice.details["second_pass"]
    assert done["skipped"] is None
    assert set(done["ks"]) <= set(range(4, 8)) and done["first_k"] in done["ks"]
    items, _ = refocus(x, result.per_k, replace(result.config, refocus=True), result.plan)
    assert [i.k for i in items] == list(range(4, 8))
