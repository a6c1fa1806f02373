"""select_k: the stated rule finds a known K, says when it is at an edge, and says what it cannot decide."""

from __future__ import annotations

import json

import numpy as np
import pytest

from studyllm_core.algorithms import k_llmmeans
from studyllm_core.algorithms.kselection import (
    RULES,
    KSelectionConfig,
    decide,
    mixture_bic,
    rule_text,
    select_k,
    subsample_size,
)


def sweep(x: np.ndarray, ks: range, metric: str = "cosine") -> list:
    """The chosen (lowest objective of 3) clustering of every K, as a sweep would hand them over."""
    return [min((k_llmmeans(x, None, k, metric=metric, seed=s) for s in range(3)), key=lambda r: r.objective) for k in ks]


def vmf_like(n: int, k: int, d: int, seed: int, noise: float = 0.15, sizes: np.ndarray | None = None) -> np.ndarray:
    """Directions around k orthogonal means (unequal sizes when given), like topic clusters on the sphere."""
    rng = np.random.default_rng(seed)
    means = np.linalg.qr(rng.normal(size=(d, k)))[0].T
    labels = np.repeat(np.arange(k), sizes) if sizes is not None else np.arange(n) % k
    return means[labels] + rng.normal(size=(labels.size, d)) * noise


@pytest.fixture(scope="module")
def five() -> tuple[np.ndarray, list]:
    x = vmf_like(600, 5, 20, seed=1, sizes=np.array([240, 150, 100, 70, 40]))
    return x, sweep(x, range(2, 10))


def test_finds_the_known_k_with_an_interval_and_no_edge_note(five):
    x, results = five
    selection = select_k(x, results, seed=0)
    assert selection.k == 5 and selection.decided
    assert selection.interval[0] <= 5 <= selection.interval[1]
    assert selection.notes == ["stability, BIC, knee chose stability 5, bic 5, knee 5"]
    assert "median" in selection.rule and selection.config.rule == "consensus"
    assert selection.criteria[5]["stability"] > selection.criteria[6]["stability"] + 0.03


def test_the_stability_rule_finds_it_too_with_a_bootstrap_interval(five):
    x, results = five
    selection = select_k(x, results, KSelectionConfig(rule="stability"), seed=0)
    assert selection.k == 5 and selection.interval == (5, 5) and selection.notes == []
    assert "largest K" in selection.rule and "Ben-Hur" in selection.rule


def test_euclidean_blobs(blobs):
    x, _ = blobs(500, 4, 6, seed=3, spread=6.0)
    selection = select_k(x, sweep(x, range(2, 8), metric="euclidean"), seed=1)
    assert selection.k == 4


@pytest.mark.parametrize("rule", ["bic", "knee", "stability_max", "consensus", "prediction_strength"])
def test_the_other_rules_find_well_separated_clusters(five, rule):
    x, results = five
    assert select_k(x, results, KSelectionConfig(rule=rule)).k == 5


def test_best_at_the_top_of_the_range_says_so(five):
    x, results = five
    selection = select_k(x, [r for r in results if r.k <= 5])
    assert selection.k == 5
    assert any("largest swept" in note and "sweep higher K" in note for note in selection.notes)


def test_best_at_the_bottom_of_the_range_says_so(five):
    x, results = five
    selection = select_k(x, [r for r in results if r.k >= 5])
    assert selection.k == 5
    assert any("smallest swept" in note for note in selection.notes)


def test_too_few_k_is_undecided_and_says_why(five):
    x, results = five
    selection = select_k(x, results[:2])
    assert selection.k is None and not selection.decided and selection.interval == (2, 3)
    assert "2 K value(s)" in selection.notes[0] and "at least 3" in selection.notes[0]
    assert selection.criteria[2] == {"objective": results[0].objective}  # nothing costly was computed


def test_the_largest_equally_stable_k_wins_over_coarser_merges():
    # Like AG News: merging true topics (K=2, 3) is as reproducible as the true K=4; splitting one is not.
    table = {2: 0.974, 3: 0.968, 4: 0.952, 5: 0.735, 6: 0.783}
    table = {k: {"objective": 10.0 - k, "stability": v} for k, v in table.items()}
    assert decide(KSelectionConfig(rule="stability"), table).k == 4
    assert decide(KSelectionConfig(rule="stability_max"), table).k == 2


def test_perfectly_stable_ks_tie_to_the_finest():
    # Well separated blobs: K=2..5 are all reproduced exactly (ARI 1); the most stable K is then the
    # finest of them, not the coarsest merge.
    table = {k: {"objective": 10.0 - k, "stability": v} for k, v in {2: 1.0, 3: 1.0, 4: 1.0, 5: 1.0, 6: 0.87}.items()}
    assert decide(KSelectionConfig(rule="stability_max"), table).k == 5


def test_consensus_is_the_median_of_stability_bic_and_knee():
    # Most stable at 2 (a coarse level), BIC lowest at 8 (too many), knee at 5: the median is 5.
    objective = {2: 100.0, 3: 80.0, 4: 62.0, 5: 45.0, 6: 43.0, 7: 41.0, 8: 40.0}
    table = {k: {"objective": o, "stability": 0.99 - 0.05 * k, "bic": -float(k)} for k, o in objective.items()}
    selection = decide(KSelectionConfig(rule="consensus"), table)
    assert (selection.k, selection.interval) == (5, (2, 8))
    assert "stability 2, bic 8, knee 5" in selection.notes[0]


def test_the_knee_is_the_centre_of_a_flat_top_so_one_local_optimum_does_not_move_it():
    # A smooth objective over K=44..132 in steps of 4 (like Tweet's): its distance below the chord is
    # flat from about 68 to 92. One K's k-means landing in a better local optimum (3 units lower,
    # about 0.7%) moved the argmax from 72 to 88 between two seeds; the centre stays within 5%.
    ks = range(44, 133, 4)
    smooth = {k: 600.0 * (k / 44) ** -0.5 for k in ks}
    picks = []
    for better in (72, 88):
        table = {k: {"objective": w - (3.0 if k == better else 0.0)} for k, w in smooth.items()}
        selection = decide(KSelectionConfig(rule="knee"), table)
        assert selection.interval[0] <= selection.k <= selection.interval[1]
        assert selection.interval[0] < better < selection.interval[1]  # the whole flat top is plausible
        picks.append(selection.k)
    assert abs(picks[0] - picks[1]) <= 0.05 * max(picks), picks
    assert decide(KSelectionConfig(rule="knee"), {k: {"objective": w} for k, w in smooth.items()}).k in picks


def test_bic_reads_its_minimum_from_a_parabola_so_one_local_optimum_does_not_move_it():
    # BIC over K=40..80 in steps of 2 with its minimum at 60; a K whose k-means stopped 0.1% above its
    # optimum gets its BIC raised by hundreds (syn_k60_min50: 400 per objective unit). Whichever K near
    # the minimum is the badly optimised one, the lowest single K jumps, the parabola's vertex stays.
    ks = range(40, 81, 2)
    smooth = {k: 8.0 * (k - 60) ** 2 for k in ks}
    picks, lowest = [], []
    for bad in (58, 60, 62):
        table = {k: {"bic": b + (400.0 if k in (bad, 60) else 0.0)} for k, b in smooth.items()}
        picks.append(decide(KSelectionConfig(rule="bic"), table).k)
        lowest.append(decide(KSelectionConfig(rule="bic", bic_fit=0.0), table).k)
    assert picks == [60, 60, 60], picks
    assert lowest != [60, 60, 60] and all(k != 60 for k in lowest)  # the lowest single K moves off 60
    selection = decide(KSelectionConfig(rule="bic"), {k: {"bic": b} for k, b in smooth.items()})
    assert selection.k == 60 and selection.interval == (60, 60)
    assert "vertex of a parabola" in selection.rule and "within 25%" in selection.rule
    assert "vertex of a parabola" not in decide(KSelectionConfig(rule="bic", bic_fit=0.0), table).rule


def test_bic_falls_back_to_the_lowest_when_no_parabola_fits():
    # a BIC falling over the whole range (no minimum inside it): the parabola opens downward or its
    # vertex leaves the window, so the lowest K (the edge) is kept and said
    table = {k: {"bic": -float(k) ** 2, "objective": 100.0 - k} for k in range(2, 11)}
    selection = decide(KSelectionConfig(rule="bic"), table)
    assert selection.k == 10 and "largest swept" in selection.notes[0]
    with pytest.raises(ValueError, match="bic_fit"):
        KSelectionConfig(bic_fit=1.0).validate()


def test_every_k_alike_is_undecided():
    # A data set cannot be trusted to tie exactly, so the rule gets tied criteria: it must refuse to pick.
    table = {k: {"objective": 100.0 - k, "stability": 0.9 + 0.001 * (k % 2), "bic": 0.0} for k in range(4, 9)}
    selection = decide(KSelectionConfig(rule="stability"), table)
    assert selection.k is None and selection.interval == (4, 8)
    assert "every K in 4..8 is as stable as the best" in selection.notes[0]
    # The consensus says which of its three could not decide: stability (all alike), the knee (a
    # straight objective); BIC alone is not a consensus.
    consensus = decide(KSelectionConfig(), table)
    assert consensus.k is None and "fewer than two" in consensus.notes[0]
    assert "as stable as the best" in consensus.notes[0] and "no knee" in consensus.notes[0]


def test_same_input_and_seed_same_selection(five):
    x, results = five
    a, b = select_k(x, results, seed=7), select_k(x, results, seed=7)
    assert json.dumps(a.to_dict()) == json.dumps(b.to_dict())
    assert a.criteria[4]["stability"] != select_k(x, results, seed=8).criteria[4]["stability"]  # the seed is used


def test_to_dict_is_strict_json(five):
    x, results = five
    out = json.loads(json.dumps(select_k(x, results).to_dict(), allow_nan=False))
    assert out["k"] == 5 and out["config"]["rule"] == "consensus" and "stability_pairs" not in out["criteria"]["5"]


def test_bic_prefers_the_true_partition(five):
    x, results = five
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    by_k = {r.k: mixture_bic(unit, r.labels, r.k) for r in results}
    assert min(by_k, key=by_k.get) == 5


def test_bad_input_is_a_one_line_error(five):
    x, results = five
    with pytest.raises(ValueError, match="no clustering"):
        select_k(x, [])
    with pytest.raises(ValueError, match="repeats"):
        select_k(x, [results[0], results[0]])
    with pytest.raises(ValueError, match="Z has 10 rows"):
        select_k(x[:10], results)
    with pytest.raises(ValueError, match="not a K-selection rule"):
        select_k(x, results, KSelectionConfig(rule="elbow"))
    with pytest.raises(ValueError, match="fraction"):
        select_k(x, results, KSelectionConfig(fraction=0.0))
    assert set(RULES) == {"stability", "stability_max", "bic", "gap", "prediction_strength", "knee", "consensus"}


def test_large_k_for_the_data_is_flagged():
    x = vmf_like(60, 3, 8, seed=2)
    selection = select_k(x, sweep(x, range(2, 9)), KSelectionConfig(n_resamples=3, n_init=1))
    assert any("fewer than 5 items per cluster" in note for note in selection.notes)


def test_max_sample_caps_the_stability_subsample_and_is_stated():
    """The cap bounds the stability criterion's cost at large N: subsamples never exceed it (nor N, nor
    fall below K), the rule says so, and a cap of 1 item is refused with the field's name."""
    capped = KSelectionConfig(max_sample=300)
    assert subsample_size(100_000, 20, capped) == 300
    assert subsample_size(400, 20, capped) == 200  # fraction 0.5 of 400 is under the cap
    assert subsample_size(100_000, 500, capped) == 500  # never fewer items than clusters
    assert subsample_size(100_000, 20, KSelectionConfig()) == 50_000  # no cap by default
    assert "(at most 300 items)" in rule_text(capped) and "at most" not in rule_text(KSelectionConfig())
    with pytest.raises(ValueError, match="max_sample"):
        capped.__class__(max_sample=1).validate()


def test_a_capped_subsample_is_what_the_cramped_note_counts():
    x = vmf_like(600, 3, 8, seed=2)
    results = sweep(x, range(2, 9))
    assert not any("items per cluster" in n for n in select_k(x, results, KSelectionConfig(n_resamples=3, n_init=1)).notes)
    capped = select_k(x, results, KSelectionConfig(n_resamples=3, n_init=1, max_sample=30))
    assert "K=7 and above leave fewer than 5 items per cluster in a 30-item subsample" in " ".join(capped.notes)


def test_prediction_strength_is_high_up_to_the_true_k_and_drops_past_it(five):
    """Tibshirani & Walther's criterion on the five unequal clusters: at K=5 every test cluster's pairs
    stay together; past it a split cluster's pairs do not (below 5 an arbitrary merge of orthogonal
    clusters need not reproduce either)."""
    x, results = five
    table = select_k(x, results, KSelectionConfig(rule="prediction_strength"), seed=0).criteria
    assert table[5]["prediction_strength"] >= 0.95
    assert max(table[k]["prediction_strength"] for k in range(6, 10)) < 0.8


def test_prediction_strength_rule_takes_the_largest_strong_k_or_says_none_is():
    config = KSelectionConfig(rule="prediction_strength")
    table = {k: {"objective": 10.0 - k, "prediction_strength": ps}
             for k, ps in {2: 0.95, 3: 0.9, 4: 0.85, 5: 0.6, 6: 0.82, 7: 0.5}.items()}
    selection = decide(config, table)
    assert selection.k == 6 and selection.interval == (2, 6) and "Tibshirani & Walther" in selection.rule
    weak = decide(config, {k: {**row, "prediction_strength": 0.5} for k, row in table.items()})
    assert weak.k is None and "no K in 2..7 reaches prediction strength 0.8" in weak.notes[0]
