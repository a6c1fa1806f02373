"""compare: the breakdown of a clustering of replies by model and prompt (no database: a plain table)."""

import json

import pandas as pd
import pytest

from studyllm_core.services.study.comparison import compare


def _replies(assignments: dict[str, list[int]], prompts: int = 4) -> pd.DataFrame:
    """One reply per (model, prompt i % prompts) with the given clusters, in order."""
    return pd.DataFrame([{"provider": "stub", "model": model, "prompt": f"q{i % prompts}", "cluster": cluster}
                         for model, clusters in assignments.items() for i, cluster in enumerate(clusters)])


def test_models_in_different_clusters_diverge_and_alike_models_do_not():
    result = compare(_replies({"alpha": [0] * 8, "gamma": [0] * 8, "beta": [1] * 8}), dataset="d", k=2)
    pairs = {(r.model_a, r.model_b): r for r in result.divergence.itertuples()}
    assert pairs[("stub:alpha", "stub:beta")].js_divergence == pytest.approx(1.0)
    assert pairs[("stub:alpha", "stub:gamma")].js_divergence == pytest.approx(0.0)
    assert pairs[("stub:alpha", "stub:beta")].reading.startswith("answer differently: cluster 0 holds 100% of stub:alpha")
    assert pairs[("stub:alpha", "stub:gamma")].reading.startswith("answer alike")
    assert result.divergence["js_divergence"].iloc[0] == pytest.approx(1.0)  # the most different pair first
    assert result.independence is not None and result.independence.p_value < 0.001
    share = result.shares.set_index(["model", "cluster"])["share"]
    assert share[("beta", 1)] == 1.0 and share[("beta", 0)] == 0.0 and share[("alpha", 0)] == 1.0
    assert "Jensen-Shannon divergence 1.00 bits" in result.describe()
    json.dumps(result.to_dict())  # the CLI's --json


def test_partial_overlap_and_prompt_spread():
    # beta puts half its replies in alpha's cluster; prompt q0 always lands in cluster 0, q1 splits 0/1.
    result = compare(_replies({"alpha": [0, 0, 0, 0], "beta": [0, 1, 0, 1]}), dataset="d", k=2)
    [pair] = result.divergence.itertuples()
    assert 0.3 < pair.js_divergence < 0.5 and pair.reading.startswith("overlap partly")
    spread = result.prompts.set_index("prompt")
    assert spread.loc["q0", "clusters_hit"] == 1 and spread.loc["q0", "spread_bits"] == 0.0
    assert spread.loc["q1", "clusters_hit"] == 2 and spread.loc["q1", "spread_bits"] == pytest.approx(1.0)
    assert list(result.prompts["prompt"][:2]) == ["q1", "q3"]  # most spread first


def test_one_model_has_nothing_to_compare_but_its_prompts():
    result = compare(_replies({"alpha": [0, 1, 2, 0]}), dataset="d", k=3)
    assert result.divergence.empty and result.independence is None
    assert "only one model answered (stub:alpha)" in result.describe()
    assert len(result.prompts) == 4
