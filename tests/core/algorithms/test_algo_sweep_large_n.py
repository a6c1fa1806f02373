"""The sweep at large N (SweepPlan): chosen by N, said, sampled where it says, unchanged at or below the
threshold. Small N with the threshold lowered through the config stands in for a million items."""

from __future__ import annotations

import numpy as np
import pytest

from studyllm_core.algorithms import SweepConfig, run_sweep
from studyllm_core.algorithms import sweep as sweep_module
from studyllm_core.algorithms.sweep import sweep_plan

LARGE = dict(large_n=300, fit_sample_size=200, criteria_sample_size=150, silhouette_sample_size=100)


def test_the_large_path_is_chosen_above_the_threshold_and_said(directions):
    x, truth = directions(600, 4, 12, seed=3)
    messages: list[str] = []
    result = run_sweep(x, None, SweepConfig(k_min=3, k_max=5, n_restarts=2, **LARGE), labels=truth,
                       progress=messages.append)
    assert messages[0].startswith("N=600 > 300: sampled k-means (restarts fit on a 200 sample")
    assert "K criteria on a 150 sample" in messages[0] and "silhouette on a 100 sample" in messages[0]
    plan = result.to_dict()["plan"]
    assert plan["large"] and plan["fit_sample"] == 200 and plan["criteria_sample"] == 150
    assert plan["text"] == messages[0]
    four = result.result_for(4)
    assert four.clustering.labels.shape == (600,)  # refined on every row, not only the sample
    assert np.bincount(four.clustering.labels, minlength=4).min() > 0
    assert four.scores.label_metrics["nmi"] > 0.9
    assert result.best_k is not None  # K is still chosen, from the sampled criteria


def test_at_or_below_the_threshold_nothing_changes(directions):
    x, truth = directions(300, 3, 12, seed=4)
    config = SweepConfig(k_min=2, k_max=4, n_restarts=2)
    at_threshold = run_sweep(x, None, SweepConfig(k_min=2, k_max=4, n_restarts=2, large_n=300), labels=truth)
    default = run_sweep(x, None, config, labels=truth)
    assert not at_threshold.plan.large and at_threshold.plan.describe().startswith("N=300 <= 300")
    for a, b in zip(at_threshold.per_k, default.per_k):
        assert np.array_equal(a.clustering.labels, b.clustering.labels)
        assert a.scores.to_row() == b.scores.to_row()


def test_sampled_work_sees_at_most_the_sample(directions, monkeypatch):
    """Restarts fit on the fit sample, the K criteria on the criteria sample, silhouette on its sample; the
    refinement alone sees every row."""
    x, _ = directions(600, 4, 12, seed=5)
    seen: dict[str, list[int]] = {"fit": [], "criteria": [], "silhouette": [], "refine": []}

    def spy(name, real, position=0):
        def wrapper(*args, **kwargs):
            seen[name].append(len(args[position]))
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(sweep_module, "k_llmmeans", spy("fit", sweep_module.k_llmmeans))
    monkeypatch.setattr(sweep_module, "selection_criteria", spy("criteria", sweep_module.selection_criteria))
    monkeypatch.setattr(sweep_module, "silhouette", spy("silhouette", sweep_module.silhouette))
    monkeypatch.setattr(sweep_module, "refine_costs", spy("refine", sweep_module.refine_costs, position=1))
    result = run_sweep(x, None, SweepConfig(k_min=3, k_max=4, n_restarts=3, **LARGE))
    assert seen["fit"] == [200] * 6  # 3 restarts x 2 K, each on the 200-row sample
    assert seen["criteria"] == [150, 150]
    assert seen["refine"] == [600, 600]
    assert all(n <= 600 for n in seen["silhouette"]) and len(seen["silhouette"]) == 2
    # restart stability compares the restarts' labels on the sample
    assert all(run.labels.size == 200 for item in result.per_k for run in item.restarts.runs)


def test_the_plan_draws_the_same_sample_for_every_k_and_seed_dependent():
    config = SweepConfig(**LARGE)
    a, b = sweep_plan(1000, config), sweep_plan(1000, config)
    assert np.array_equal(a.fit_rows, b.fit_rows) and a.fit_rows.size == 200
    assert np.unique(a.fit_rows).size == 200 and a.criteria_rows.size == 150
    other = sweep_plan(1000, SweepConfig(**LARGE, seed=1))
    assert not np.array_equal(a.fit_rows, other.fit_rows)


def test_ksubspaces_stays_exact_at_large_n():
    assert not sweep_plan(10_000, SweepConfig(method="ksubspaces", **LARGE)).large


@pytest.mark.parametrize("field", ["large_n", "fit_sample_size", "criteria_sample_size", "refine_iter"])
def test_bad_large_n_settings_are_refused(field):
    with pytest.raises(ValueError, match=field):
        SweepConfig(**{field: 0}).validate()


def test_the_pca_above_its_sample_size_is_fitted_on_a_sample_and_said(directions, monkeypatch):
    """Above PCA_FIT_SAMPLE rows (lowered here) the sweep's PCA axes come from a sample; every row is still
    projected and clustered, and the PCA line and the result say how many rows the axes were fitted on."""
    monkeypatch.setattr(sweep_module, "PCA_FIT_SAMPLE", 250)
    x, truth = directions(600, 4, 12, seed=6)
    messages: list[str] = []
    result = run_sweep(x, None, SweepConfig(k_min=4, k_max=4, n_restarts=2, pca_dim=6), labels=truth,
                       progress=messages.append)
    assert result.pca["fit_sample"] == 250
    assert messages[0].startswith("PCA 12 -> 6 dims (") and "axes fitted on a 250 sample" in messages[0]
    assert result.result_for(4).clustering.labels.shape == (600,)
    assert result.result_for(4).scores.label_metrics["nmi"] > 0.9
    below = run_sweep(x[:250], None, SweepConfig(k_min=4, k_max=4, n_restarts=2, pca_dim=6))
    assert below.pca["fit_sample"] is None


def test_the_default_threshold_is_the_fit_sample_so_the_cost_does_not_jump_down_past_it():
    """By default a sweep samples as soon as N exceeds the fit sample: just past the threshold the restarts fit on
    as many rows as at the threshold (20,000), so a sweep of 50,000 texts no longer runs every restart, breath and
    criterion on all of them (it took 3.4x longer than a sweep of a million, which samples)."""
    config = SweepConfig()
    assert config.large_n == config.fit_sample_size
    at, past, mid = (sweep_plan(n, config) for n in (config.large_n, config.large_n + 1, 50_000))
    assert not at.large and past.large and mid.large
    assert past.fit_rows.size == mid.fit_rows.size == config.large_n
    assert mid.criteria_rows.size == config.criteria_sample_size
    assert mid.describe().startswith("N=50,000 > 20,000: sampled k-means")
