"""run_sweep: choosing K, determinism, LLM call budget, JSON output, validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from studyllm_core.algorithms import SweepConfig, choose_best_k, cluster_restarts, item_costs, k_criteria, run_sweep, score_k


def test_best_k_is_the_true_k_on_separated_blobs(blobs):
    x, truth = blobs(1200, 5, 6, seed=0)
    result = run_sweep(x, None, SweepConfig(k_min=2, k_max=8, n_restarts=3, metric="euclidean"), labels=truth)
    assert result.best_k == 5
    best = result.result_for(5)
    assert best.scores.label_metrics["acc"] > 0.95 and best.scores.label_metrics["ari"] > 0.95
    assert best.scores.stability.mean_ari == pytest.approx(1.0)
    assert [item.k for item in result.per_k] == list(range(2, 9))
    assert "stab" in result.rule and "BIC" in result.rule and "knee" in result.rule
    assert result.choice.interval[0] <= 5 <= result.choice.interval[1]


def test_best_k_with_cosine(directions):
    x, _ = directions(900, 4, 20, seed=1)
    assert run_sweep(x, None, SweepConfig(k_min=2, k_max=6, n_restarts=3, metric="cosine")).best_k == 4


def test_best_k_with_pca_then_cosine(blobs):
    x, _ = blobs(900, 4, 20, seed=1)
    result = run_sweep(x, None, SweepConfig(k_min=2, k_max=6, n_restarts=3, pca_dim=5, metric="cosine"))
    assert result.best_k == 4
    assert result.pca["dim"] == 5 and not result.pca["clamped"]
    assert result.per_k[0].clustering.centroids.shape == (2, 5)


def test_ksubspaces_method(flats):
    x, truth = flats(150, 3, 6, 1, seed=2)
    config = SweepConfig(k_min=3, k_max=3, n_restarts=3, method="ksubspaces", rank_r=1, metric="euclidean")
    result = run_sweep(x, None, config, labels=truth)
    assert result.per_k[0].scores.label_metrics["ari"] > 0.95


def test_same_seed_same_sweep(blobs):
    x, _ = blobs(800, 4, 5, seed=3, spread=2.0)
    config = SweepConfig(k_min=2, k_max=5, n_restarts=3, metric="euclidean", seed=11)
    a, b = run_sweep(x, None, config), run_sweep(x, None, config)
    assert a.to_dict() == b.to_dict()
    for ra, rb in zip(a.per_k, b.per_k):
        np.testing.assert_array_equal(ra.clustering.labels, rb.clustering.labels)
    other = run_sweep(x, None, SweepConfig(k_min=2, k_max=5, n_restarts=3, metric="euclidean", seed=12))
    assert other.per_k[0].restarts.seeds != a.per_k[0].restarts.seeds


def test_to_dict_is_strict_json(blobs):
    x, truth = blobs(300, 3, 4, seed=4)
    result = run_sweep(x, None, SweepConfig(k_min=2, k_max=4, n_restarts=1, metric="euclidean"), labels=truth)
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["best_k"] == result.best_k and data["rule"] == result.rule
    first = data["per_k"][0]
    assert first["stability"]["mean_ari"] is None  # one restart: undefined, stated as null
    assert set(first) >= {"objective", "stability", "label_metrics", "summaries", "sizes", "silhouette_method"}
    assert sum(first["sizes"]) == 300


class CountingLLM:
    def __init__(self, x: np.ndarray) -> None:
        self.texts = [f"t{i}" for i in range(len(x))]
        self.lookup = dict(zip(self.texts, x))
        self.summaries = 0

    def summarize(self, texts: list[str]) -> str:
        self.summaries += 1
        return texts[0]

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.lookup[t] for t in texts])


@pytest.mark.parametrize(("mode", "factor"), [("all", 2), ("best", 1)])
def test_llm_calls_are_bounded(blobs, mode, factor):
    x, _ = blobs(300, 3, 4, seed=5)
    llm = CountingLLM(x)
    config = SweepConfig(k_min=2, k_max=4, n_restarts=2, llm_rounds=2, metric="euclidean", summarize_restarts=mode)
    result = run_sweep(x, llm.texts, config, summarize=llm.summarize, embed=llm.embed)
    expected = sum(k * 2 * factor for k in (2, 3, 4))
    assert llm.summaries == result.n_summarize_calls == expected
    assert all(len(item.clustering.summaries) == item.k for item in result.per_k)


def test_llm_with_pca_projects_summaries(blobs):
    x, _ = blobs(300, 3, 10, seed=6)
    llm = CountingLLM(x)
    result = run_sweep(x, llm.texts, SweepConfig(k_min=3, k_max=3, n_restarts=1, pca_dim=4, llm_rounds=1),
                       summarize=llm.summarize, embed=llm.embed)
    assert result.per_k[0].clustering.summary_centroids.shape == (3, 4)


def test_progress_messages(blobs):
    x, _ = blobs(200, 2, 3, seed=7)
    messages: list[str] = []
    run_sweep(x, None, SweepConfig(k_min=2, k_max=3, n_restarts=2), progress=messages.append)
    # the plan chosen by N first (SweepPlan.describe), then one line per K
    assert len(messages) == 3 and messages[0].startswith("N=200 <= 20,000") and messages[1].startswith("K=2")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (SweepConfig(k_min=1, k_max=3), "k_min must be an integer >= 2"),
        (SweepConfig(k_min=2, k_max=51), "k_max=51 exceeds the number of items N=50"),
        (SweepConfig(k_min=5, k_max=3), "k_min=5 is larger than k_max=3"),
        (SweepConfig(pca_dim=9), "pca dim=9 exceeds the embedding dimension d=4"),
        (SweepConfig(method="dbscan"), "method='dbscan' is not supported"),
        (SweepConfig(method="ksubspaces", rank_r=3, k_max=13), "k_max x \\(rank_r \\+ 1\\) = 52 exceeds N=50"),
    ],
)
def test_invalid_configs_raise(config, message):
    with pytest.raises(ValueError, match=message):
        run_sweep(np.random.default_rng(0).normal(size=(50, 4)), None, config)


def test_invalid_inputs_raise():
    x = np.random.default_rng(0).normal(size=(50, 4))
    with pytest.raises(ValueError, match="texts has 3 entries but X has 50 rows"):
        run_sweep(x, ["a", "b", "c"], SweepConfig(k_max=3))
    with pytest.raises(ValueError, match="labels has shape \\(49,\\)"):
        run_sweep(x, None, SweepConfig(k_max=3), labels=np.zeros(49))
    x[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        run_sweep(x, None, SweepConfig(k_max=3))


def test_per_k_pieces_match_the_sweep(blobs):
    # The pipeline runs one K per partition with these pieces; they must agree with run_sweep.
    x, truth = blobs(600, 3, 5, seed=8)
    config = SweepConfig(k_min=3, k_max=3, n_restarts=3, metric="cosine", seed=4)
    swept = run_sweep(x, None, config, labels=truth).per_k[0]
    restarts = cluster_restarts(x, None, 3, config)
    assert [r.objective for r in restarts.runs] == [r.objective for r in swept.restarts.runs]
    chosen = restarts.chosen
    costs = item_costs(x, chosen.labels, chosen.centroids, "cosine")
    scores = score_k(x, chosen.labels, [r.labels for r in restarts.runs], costs, config, truth=truth,
                     criteria=k_criteria(x, chosen, config.seed))
    assert scores == swept.scores
    row = scores.to_row()
    assert row["k"] == 3 and row["stability_ari"] == pytest.approx(1.0) and row["acc"] > 0.95
    assert json.loads(json.dumps(row, allow_nan=False)) == row


def test_choose_best_k_rule():
    assert choose_best_k({2: 0.5, 3: 0.9, 4: 0.9}) == 3  # ties go to the smaller K
    assert choose_best_k({2: float("nan"), 5: 0.1}) == 5  # undefined scores never win
    assert choose_best_k({4: None, 6: None}) == 4
    with pytest.raises(ValueError, match="no K has been scored"):
        choose_best_k({})
