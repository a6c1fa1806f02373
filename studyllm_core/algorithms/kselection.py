"""Choosing the number of clusters K from a sweep's per-K clusterings, without labels.

`select_k` is the one entry point. It applies a rule from RULES to criteria computed on the vectors
the sweep clustered (Z, after PCA) and the sweep's chosen clustering of each K, and returns a
KSelection that states the rule, the chosen K, a plausible K interval and notes: the best at an edge
of the range, and what the rule could not decide (then `k` is None - never a silent best K).

The criteria, each from the literature:

- subsampling stability (Ben-Hur, Elisseeff & Guyon 2002; Lange, Roth, Braun & Buhmann 2004):
  cluster B random half-samples at K (best of a few k-means++ starts, so a bad local optimum does
  not pass for instability), extend each to all items by the nearest centroid (Lange's transfer),
  and average the adjusted Rand index over all pairs. Subsample b is the same draw for every K, so
  neighbouring K differ by K, not by the draw;
- a mixture BIC evaluated at the k-means partition: von Mises-Fisher components with one shared
  concentration (Banerjee et al. 2005's estimate) for the cosine metric, isotropic Gaussians with
  one shared variance (as in x-means) for the Euclidean one;
- the gap statistic (Tibshirani, Walther & Hastie 2001) with uniform references in the principal-
  component box of Z (rows re-normalised for the cosine metric) and its one-standard-error rule;
- the knee of the objective curve: where it lies farthest below the chord joining the ends of the
  range. That distance is flat-topped on real curves (Tweet: within 0.03 of its maximum from 68 to 92
  clusters), so its argmax moved with each K's k-means local optimum, i.e. with the seed; the knee is
  the depth-weighted centre of the K at least KNEE_MARGIN as deep, a smoothing over neighbouring K.

The default rule ("consensus": the median of the most stable K, the lowest BIC and the knee) was
picked on benchmarks/k_selection.py, see docs/methods.md: each criterion alone fails in its own
direction (stability picks a coarse level of nested groups, BIC too many clusters on large real
sets, the knee follows the swept range, the gap rarely decides), and their median was within 20% of
the true K on six of the seven sets at every seed, the same K (+-5%) across seeds on six.
Pure numpy/scipy/scikit-learn; the same inputs and seed give the same selection.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import combinations
from typing import Any

import numpy as np

from .kmeans import k_llmmeans
from .metrics import adjusted_rand
from .results import ClusteringResult
from .validation import as_matrix, check_metric, check_positive_int, normalize_rows

N_BOOTSTRAP = 200  # stability interval: re-draws of the subsamples the rule is re-applied to
BIC_MARGIN = 10.0  # Kass & Raftery (1995): a BIC difference below 10 is not strong evidence
PS_SPLITS = 2  # prediction strength: two-fold splits per K
PS_THRESHOLD = 0.8  # prediction strength: Tibshirani & Walther's suggested cut (0.8-0.9)
KNEE_MARGIN = 0.7  # knee region: K at least this share of the deepest distance below the chord
BIC_FIT = 0.25  # BIC: a parabola fitted to the K within this share of the lowest-BIC K, its vertex chosen


@dataclass(frozen=True)
class KSelectionConfig:
    """How K is chosen: `rule` is one of RULES; the other fields tune its criterion."""

    rule: str = "consensus"
    n_resamples: int = 5  # stability: subsamples per K (pairs compared: n(n-1)/2)
    fraction: float = 0.5  # stability: share of the items in each subsample
    max_sample: int = 0  # stability: at most this many items per subsample (0: no cap)
    n_init: int = 3  # stability: k-means++ starts per subsample, the lowest objective kept
    tolerance: float = 0.03  # stability: ARI this close to the most stable K counts as as stable
    n_references: int = 5  # gap: uniform reference sets per K
    reference_size: int = 2000  # gap: items per reference set (at most N)
    max_iter: int = 300
    bic_fit: float = BIC_FIT  # BIC: the vertex of a parabola over the K within this share of the lowest (0: the lowest)

    def validate(self) -> None:
        """ValueError naming the field when a setting cannot work."""
        if self.rule not in RULES:
            raise ValueError(f"rule={self.rule!r} is not a K-selection rule; use one of {', '.join(RULES)}.")
        check_positive_int(self.n_resamples, "n_resamples", minimum=2)
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {self.fraction!r}.")
        check_positive_int(self.n_init, "n_init")
        if self.max_sample:
            check_positive_int(self.max_sample, "max_sample", minimum=2)
        if not 0.0 <= self.tolerance < 1.0:
            raise ValueError(f"tolerance must be in [0, 1), got {self.tolerance!r}.")
        check_positive_int(self.n_references, "n_references", minimum=2)
        check_positive_int(self.reference_size, "reference_size", minimum=2)
        check_positive_int(self.max_iter, "max_iter")
        if not 0.0 <= self.bic_fit < 1.0:
            raise ValueError(f"bic_fit must be in [0, 1), got {self.bic_fit!r}.")


@dataclass
class KSelection:
    """What the rule decided. `k` and possibly `interval` are None when it could not decide (`notes`
    say why); `criteria` holds, per K, the values the rule looked at."""

    rule: str  # the rule in words, with its settings
    k: int | None
    interval: tuple[int, int] | None  # plausible K range (inclusive)
    notes: list[str] = field(default_factory=list)
    criteria: dict[int, dict[str, float]] = field(default_factory=dict)
    config: KSelectionConfig = field(default_factory=lambda: KSelectionConfig())

    @property
    def decided(self) -> bool:
        return self.k is not None

    def to_dict(self) -> dict[str, Any]:
        """Plain, strict-JSON form (NaN and infinities become None) for reports."""

        def clean(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        return {
            "rule": self.rule,
            "k": self.k,
            "interval": list(self.interval) if self.interval else None,
            "notes": list(self.notes),
            "criteria": {
                str(k): {n: clean(v) for n, v in row.items() if np.ndim(v) == 0} for k, row in sorted(self.criteria.items())
            },
            "config": asdict(self.config),
        }


# -- criteria -------------------------------------------------------------------------------------


def _nearest(x: np.ndarray, centroids: np.ndarray, metric: str) -> np.ndarray:
    """Label of the nearest centroid of every row (rows of x unit-norm for cosine)."""
    products = x @ centroids.T
    if metric == "cosine":
        return np.argmax(products, axis=1)
    return np.argmin(np.einsum("ij,ij->i", centroids, centroids)[None, :] - 2.0 * products, axis=1)


def _run_seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def subsample_size(n: int, k: int, config: KSelectionConfig) -> int:
    """Items per stability subsample: `fraction` of the n items, at most `max_sample` (when set, so the
    criterion's cost stops growing with N), never fewer than k and never more than n."""
    size = int(round(config.fraction * n))
    if config.max_sample:
        size = min(size, config.max_sample)
    return min(n, max(k, size))


def subsample_stability(x: np.ndarray, k: int, config: KSelectionConfig, seed: int, metric: str = "cosine") -> np.ndarray:
    """Adjusted Rand index of every pair among `n_resamples` clusterings of random subsamples (each the
    best of `n_init` k-means++ starts, extended to all rows of x by the nearest centroid). Rows of x
    must be unit-norm for the cosine metric."""
    n = x.shape[0]
    size = subsample_size(n, k, config)
    extended = []
    for b in range(config.n_resamples):
        rows = np.sort(np.random.default_rng([seed, b]).choice(n, size=size, replace=False))
        sample = x[rows]
        fits = [
            k_llmmeans(sample, None, k, metric=metric, max_iter=config.max_iter, seed=_run_seed(seed, b, k, start))
            for start in range(config.n_init)
        ]
        best = min(fits, key=lambda fit: fit.objective)
        extended.append(_nearest(x, best.centroids, metric))
    return np.array([adjusted_rand(a, b) for a, b in combinations(extended, 2)])


def prediction_strength(x: np.ndarray, k: int, config: KSelectionConfig, seed: int, metric: str = "cosine") -> np.ndarray:
    """Prediction strength (Tibshirani & Walther 2005) of PS_SPLITS random two-fold splits: both halves
    clustered at K (best of `n_init` k-means++ starts), the test half's clusters read through the
    training half's centroids; per split, the smallest share over test clusters (of 2+ items) of their
    pairs that the training centroids put together. Split b is the same draw for every K."""
    n = x.shape[0]
    out = np.empty(PS_SPLITS)
    for b in range(PS_SPLITS):
        order = np.random.default_rng([seed, b, 2]).permutation(n)
        halves = [np.sort(order[: n // 2]), np.sort(order[n // 2 :])]
        fits = []
        for h, rows in enumerate(halves):
            runs = [k_llmmeans(x[rows], None, min(k, len(rows)), metric=metric, max_iter=config.max_iter,
                               seed=_run_seed(seed, b, k, h, start)) for start in range(config.n_init)]
            fits.append(min(runs, key=lambda fit: fit.objective))
        test_labels, predicted = fits[1].labels, _nearest(x[halves[1]], fits[0].centroids, metric)
        shares = []
        for j in np.unique(test_labels):
            members = predicted[test_labels == j]
            m = members.size
            if m >= 2:
                counts = np.bincount(members).astype(np.float64)
                shares.append(float(np.sum(counts * (counts - 1)) / (m * (m - 1))))
        out[b] = min(shares) if shares else 0.0
    return out


def _log_vmf_normaliser(kappa: float, dim: int) -> float:
    """log C_d(kappa) of the von Mises-Fisher density on the unit sphere in `dim` dimensions
    (scipy's exponentially scaled Bessel function keeps it finite for large kappa)."""
    from scipy.special import ive

    order = dim / 2 - 1
    return order * math.log(kappa) - (dim / 2) * math.log(2 * math.pi) - (math.log(ive(order, kappa)) + kappa)


def mixture_bic(x: np.ndarray, labels: np.ndarray, k: int, metric: str = "cosine") -> float:
    """BIC (lower is better) of the hard partition `labels` read as a mixture: von Mises-Fisher
    components with a shared concentration (cosine; rows of x unit-norm) or isotropic Gaussians with a
    shared variance (Euclidean). Free parameters: the K means, the shared spread, K-1 weights."""
    n, dim = x.shape
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=k).astype(np.float64)
    present = counts > 0
    sums = np.zeros((k, dim))
    np.add.at(sums, labels, x.astype(np.float64, copy=False))
    log_weights = float(np.sum(counts[present] * np.log(counts[present] / n)))
    if metric == "cosine":
        resultant = float(np.linalg.norm(sums, axis=1).sum())
        r_bar = min(resultant / n, 1.0 - 1e-9)
        kappa = max(r_bar * (dim - r_bar**2) / (1.0 - r_bar**2), 1e-9)
        log_lik = n * _log_vmf_normaliser(kappa, dim) + kappa * resultant + log_weights
        n_params = k * (dim - 1) + 1 + (k - 1)
    else:
        means = sums / np.maximum(counts, 1.0)[:, None]
        sse = float(np.sum((x.astype(np.float64, copy=False) - means[labels]) ** 2))
        variance = max(sse / max(n - k, 1) / dim, 1e-12)
        log_lik = -0.5 * n * dim * math.log(2 * math.pi * variance) - 0.5 * sse / variance + log_weights
        n_params = k * dim + 1 + (k - 1)
    return -2.0 * log_lik + n_params * math.log(n)


def gap_references(x: np.ndarray, k: int, config: KSelectionConfig, seed: int, metric: str = "cosine") -> np.ndarray:
    """log W_K of `n_references` uniform reference sets drawn in the principal-component box of x
    (Tibshirani et al.'s reference (b)), each of `reference_size` items and scaled to N items; W is
    the k-means objective. Reference b is the same draw for every K."""
    n, dim = x.shape
    m = min(n, max(k, config.reference_size))
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x[: min(n, 20000)] - mean, full_matrices=False)
    rotated = (x - mean) @ vt.T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    out = np.empty(config.n_references)
    for b in range(config.n_references):
        reference = np.random.default_rng([seed, b, 1]).uniform(low, high, size=(m, dim)) @ vt + mean
        if metric == "cosine":
            reference = normalize_rows(reference, "reference")
        fit = k_llmmeans(reference, None, k, metric=metric, max_iter=config.max_iter, seed=_run_seed(seed, b, k))
        out[b] = math.log(max(fit.objective, 1e-300) * n / m)
    return out


# -- rules ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    text: str  # format fields: B, pct, cap, init, tol, R
    needs: int  # fewest K values the rule decides with
    criteria: tuple[str, ...]  # what `criteria()` must compute for it


RULES: dict[str, Rule] = {
    "stability": Rule(
        "the largest K whose subsampling stability is within {tol} of the most stable K's (stability: mean "
        "pairwise adjusted Rand index of {B} clusterings of random {pct}%{cap} subsamples, each the best of {init} "
        "k-means++ starts, extended to all items by nearest centroid; Ben-Hur et al. 2002, Lange et al. 2004); "
        "plausible range: the 5-95% range of the K this rule picks when the subsamples are bootstrapped",
        needs=3,
        criteria=("stability",),
    ),
    "stability_max": Rule(
        "the most stable K (mean pairwise adjusted Rand index of {B} clusterings of random {pct}%{cap} subsamples, "
        "each the best of {init} k-means++ starts); plausible range: the 5-95% range of the K it picks when the "
        "subsamples are bootstrapped",
        needs=2,
        criteria=("stability",),
    ),
    "bic": Rule(
        "the K with the lowest BIC of the k-means partition read as a mixture (von Mises-Fisher with a shared "
        "concentration for cosine, isotropic Gaussian for Euclidean){fit}; plausible range: BIC within 10 of the "
        "lowest, and that K",
        needs=2,
        criteria=("bic",),
    ),
    "gap": Rule(
        "the smallest K with Gap(K) >= Gap(K') - s(K') for the next swept K' (Tibshirani et al. 2001; {R} "
        "uniform references in the principal-component box); plausible range: Gap within s of the largest",
        needs=2,
        criteria=("gap",),
    ),
    "consensus": Rule(
        "the median of three Ks that fail in different directions: the most stable K (mean pairwise adjusted "
        "Rand index of {B} clusterings of random {pct}%{cap} subsamples, each the best of {init} k-means++ starts; "
        "tends to a coarse level of nested groups), the lowest von Mises-Fisher mixture BIC{fit} (tends to too many "
        "clusters on large real data) and the knee of the objective (the centre of its knee region; follows the "
        "swept range); plausible range: "
        "from the smallest to the largest of the three",
        needs=3,
        criteria=("stability", "bic"),
    ),
    "prediction_strength": Rule(
        "the largest K whose prediction strength is at least 0.8 (Tibshirani & Walther 2005: two random "
        "halves clustered at K, each the best of {init} k-means++ starts; the smallest share, over the test "
        "half's clusters, of their pairs that the training half's centroids keep together; mean of 2 splits); "
        "plausible range: the K at or above 0.8",
        needs=2,
        criteria=("prediction_strength",),
    ),
    "knee": Rule(
        "the knee of the objective curve: the centre of the K at least 70% as far below the chord joining the "
        "ends of the swept range as the farthest, each weighted by its depth beyond that 70%; plausible range: "
        "those K",
        needs=3,
        criteria=(),
    ),
}


def rule_text(config: KSelectionConfig) -> str:
    """The rule of `config` in words, with its settings."""
    return RULES[config.rule].text.format(
        B=config.n_resamples, pct=round(100 * config.fraction), init=config.n_init, tol=config.tolerance,
        R=config.n_references, cap=f" (at most {config.max_sample} items)" if config.max_sample else "",
        fit=(f", read from the vertex of a parabola fitted to the BIC of the K within {round(100 * config.bic_fit)}% "
             "of the lowest (one K's local optimum moves its BIC by hundreds)") if config.bic_fit else "",
    )


def criteria(
    Z: np.ndarray, results: Sequence[ClusteringResult], config: KSelectionConfig, seed: int = 0,
    names: Sequence[str] | None = None,
) -> dict[int, dict[str, float]]:
    """Per K: the objective and the criteria in `names` (default: those of config.rule) - stability
    (+ stability_sd over pairs and the pairs' ARIs, an array), bic, gap (+ gap_sd) - for the
    clusterings in `results`."""
    names = RULES[config.rule].criteria if names is None else tuple(names)
    metric = results[0].metric
    x = as_matrix(Z, "Z")  # float32 stays float32, like the sweep's own runs
    if metric == "cosine":
        x = normalize_rows(x, "Z")
    out: dict[int, dict[str, float]] = {}
    for result in sorted(results, key=lambda r: r.k):
        k = result.k
        row = {"objective": float(result.objective)}
        if "stability" in names:
            pairs = subsample_stability(x, k, config, seed, metric)
            row.update(stability=float(pairs.mean()), stability_sd=float(pairs.std()), stability_pairs=pairs)
        if "bic" in names:
            row["bic"] = mixture_bic(x, result.labels, k, metric)
        if "prediction_strength" in names:
            splits = prediction_strength(x, k, config, seed, metric)
            row.update(prediction_strength=float(splits.mean()))
        if "gap" in names:
            references = gap_references(x, k, config, seed, metric)
            row["gap"] = float(references.mean() - math.log(max(result.objective, 1e-300)))
            row["gap_sd"] = float(references.std() * math.sqrt(1 + 1 / config.n_references))
        out[k] = row
    return out


def _stable_choice(ks: list[int], values: Mapping[int, float], tolerance: float, largest: bool) -> tuple[int, list[int]]:
    """The stability rules on one set of per-K values: (chosen K, the K within `tolerance` of the best)."""
    best = max(values[k] for k in ks)
    stable = [k for k in ks if values[k] >= best - tolerance]
    # the most stable K: exact ties (e.g. several K reproduced perfectly, ARI 1) go to the larger K, the
    # finest partition the data reproduce as well as any coarser one (Ben-Hur et al.'s reading)
    return (max(stable) if largest else max(ks, key=lambda c: (round(values[c], 9), c))), stable


def _bootstrap_interval(
    ks: list[int], crit: Mapping[int, Mapping[str, Any]], config: KSelectionConfig, largest: bool
) -> tuple[int, int] | None:
    """5%-95% range of the K the stability rule picks when the subsamples are re-drawn with replacement
    (the same re-draw for every K): how far the choice moves with the subsample draw, i.e. with the seed."""
    if not all("stability_pairs" in crit[k] for k in ks):
        return None
    b = config.n_resamples
    upper = np.triu_indices(b, 1)
    matrices = {}
    for k in ks:
        m = np.full((b, b), np.nan)
        m[upper] = crit[k]["stability_pairs"]
        matrices[k] = np.fmax(m, m.T)
    rng = np.random.default_rng([b, len(ks), *ks])
    picks = []
    for _ in range(N_BOOTSTRAP):
        draw = rng.integers(b, size=b)
        if np.unique(draw).size < 2:
            continue
        same = draw[:, None] == draw[None, :]
        values = {}
        for k in ks:
            sub = matrices[k][np.ix_(draw, draw)]
            values[k] = float(np.nanmean(np.where(same, np.nan, sub)[upper]))
        picks.append(_stable_choice(ks, values, config.tolerance, largest)[0])
    low, high = np.quantile(picks, [0.05, 0.95], method="nearest")
    return int(low), int(high)


def _bic_vertex(ks: list[int], values: Mapping[int, float], lowest: int, span: float) -> int:
    """The swept K nearest the vertex of a least-squares parabola through the BIC of the K within
    `span` x lowest of the lowest-BIC K; `lowest` itself when fewer than 3 K are that near, the parabola
    opens downward or its vertex leaves that window. Why: an optimum missed by 0.1% of the objective
    raises a K's vMF BIC by hundreds (its concentration multiplies the objective), more than the BIC
    differences between neighbouring K near the minimum, so the lowest single K follows each K's local
    optimum (the seed); the parabola reads the minimum from all the K around it."""
    near = [c for c in ks if abs(c - lowest) <= span * lowest]
    if span <= 0 or len(near) < 3:
        return lowest
    a, b, _ = np.polyfit(np.array(near, dtype=np.float64), np.array([values[c] for c in near]), 2)
    if a <= 0:
        return lowest
    vertex = -b / (2 * a)
    if not near[0] <= vertex <= near[-1]:
        return lowest
    return min(near, key=lambda c: (abs(c - vertex), c))


def decide(config: KSelectionConfig, table: Mapping[int, Mapping[str, float]]) -> KSelection:
    """Apply config.rule to per-K criteria (as `criteria` returns them, any subset of K): the pure,
    cheap half of `select_k`, e.g. to see what a narrower range would have chosen."""
    ks = sorted(int(k) for k in table)
    text = rule_text(config)
    rule = RULES[config.rule]
    crit = {k: dict(table[k]) for k in ks}

    def undecided(note: str, interval: tuple[int, int] | None) -> KSelection:
        return KSelection(text, None, interval, [note], crit, config)

    if not ks:
        raise ValueError("no K has been scored; sweep at least one K first.")
    if len(ks) < rule.needs:
        return undecided(
            f"the range has {len(ks)} K value(s) ({', '.join(map(str, ks))}) but this rule compares at least "
            f"{rule.needs}: sweep a wider range", (ks[0], ks[-1]),
        )
    notes: list[str] = []
    k: int | None
    if config.rule == "consensus":
        parts = {name: decide(replace(config, rule=name), crit) for name in ("stability_max", "bic", "knee")}
        picks = sorted(p.k for p in parts.values() if p.k is not None)
        if len(picks) < 2:
            return undecided("fewer than two of stability, BIC and knee could decide: "
                             + "; ".join(n for p in parts.values() for n in p.notes), (ks[0], ks[-1]))
        middle = float(np.median(picks))  # with two picks, their mean: snapped to the swept K at or above
        k = min(c for c in ks if c >= middle)
        interval = (picks[0], picks[-1])
        notes.append("stability, BIC, knee chose " + ", ".join(
            f"{n.replace('stability_max', 'stability')} {'-' if p.k is None else p.k}" for n, p in parts.items()))
        notes += [note for p in parts.values() if p.k is None for note in p.notes]
    elif config.rule in ("stability", "stability_max"):
        largest = config.rule == "stability"
        k, stable = _stable_choice(ks, {c: crit[c]["stability"] for c in ks}, config.tolerance, largest)
        if len(stable) == len(ks):
            return undecided(
                f"every K in {ks[0]}..{ks[-1]} is as stable as the best (within {config.tolerance} ARI): "
                "the data do not single out a K in this range; sweep a wider range", (ks[0], ks[-1]),
            )
        interval = _bootstrap_interval(ks, crit, config, largest) or (min(stable), max(stable))
        interval = (min(interval[0], k), max(interval[1], k))
    elif config.rule == "bic":
        values = {c: crit[c]["bic"] for c in ks}
        lowest = min(ks, key=lambda c: (values[c], c))
        k = _bic_vertex(ks, values, lowest, config.bic_fit)
        near = [c for c in ks if values[c] <= values[lowest] + BIC_MARGIN] + [k]
        interval = (min(near), max(near))
    elif config.rule == "prediction_strength":
        strong = [c for c in ks if crit[c]["prediction_strength"] >= PS_THRESHOLD]
        if not strong:
            return undecided(f"no K in {ks[0]}..{ks[-1]} reaches prediction strength {PS_THRESHOLD}: "
                             "sweep lower K", (ks[0], ks[-1]))
        k = max(strong)
        interval = (min(strong), k)
    elif config.rule == "gap":
        gap = {c: crit[c]["gap"] for c in ks}
        sd = {c: crit[c]["gap_sd"] for c in ks}
        top = max(ks, key=lambda c: gap[c])
        near = [c for c in ks if gap[c] >= gap[top] - sd[top]]
        interval = (min(near), max(near))
        k = next((a for a, b in zip(ks, ks[1:]) if gap[a] >= gap[b] - sd[b]), None)
        if k is None:
            return undecided("the gap grows over the whole range (no K passes the one-standard-error test): "
                             "sweep higher K", interval)
        interval = (min(interval[0], k), max(interval[1], k))
    else:  # knee
        objective = np.array([crit[c]["objective"] for c in ks])
        span = objective[0] - objective[-1]
        xs = (np.array(ks, dtype=np.float64) - ks[0]) / (ks[-1] - ks[0])
        below = (1.0 - xs) - (objective - objective[-1]) / span if span > 0 else np.zeros(len(ks))
        i = int(np.argmax(below))
        if below[i] <= 0:
            return undecided("the objective curve has no knee over this range (it does not bend below its chord)",
                             (ks[0], ks[-1]))
        # the depth-weighted centre of the knee region, not its argmax: the region's top is flat, and one
        # K's local optimum moved the argmax from one end of it to the other (seed to seed)
        weights = np.clip(below - KNEE_MARGIN * below[i], 0.0, None)
        centre = float(np.sum(weights * np.array(ks, dtype=np.float64)) / np.sum(weights))
        k = min(c for c in ks if c >= centre - 1e-9)
        near = [ks[j] for j in range(len(ks)) if weights[j] > 0 or j == i]
        interval = (min(near), max(near))
    if k == ks[-1]:
        notes.append(f"the chosen K={k} is the largest swept: the best may lie above; sweep higher K to check")
    elif k == ks[0]:
        notes.append(f"the chosen K={k} is the smallest swept: the best may lie below; sweep lower K to check")
    return KSelection(text, k, interval, notes, crit, config)


def select_k(
    Z: np.ndarray,
    results: Sequence[ClusteringResult],
    config: KSelectionConfig | None = None,
    seed: int = 0,
) -> KSelection:
    """Choose K from a sweep.

    `Z`: the (projected) vectors the sweep clustered, one row per item; `results`: the sweep's chosen
    clustering of each swept K (any order, one per K, all with the same metric). Returns the rule in
    words, the chosen K, a plausible K interval, notes (an edge of the range; what could not be
    decided, in which case `k` is None) and the per-K criteria. Deterministic for the same inputs and
    seed. Cost of the default rule: n_resamples x n_init k-means runs on `fraction` of the items per K.
    """
    config = config or KSelectionConfig()
    config.validate()
    if not results:
        raise ValueError("no clustering was given; sweep at least one K first.")
    x = as_matrix(Z, "Z")
    metric = check_metric(results[0].metric)
    ks = [r.k for r in results]
    if len(set(ks)) != len(ks):
        raise ValueError(f"results hold K={sorted(ks)} with repeats; pass one clustering per K.")
    for r in results:
        if np.asarray(r.labels).shape != (x.shape[0],):
            raise ValueError(
                f"the clustering of K={r.k} labels {np.asarray(r.labels).size} items but Z has {x.shape[0]} rows; "
                "pass the vectors that were clustered."
            )
        if r.metric != metric:
            raise ValueError("the clusterings use different metrics; pass one sweep's results.")
    rule = RULES[config.rule]
    if len(ks) < rule.needs:  # say so before paying for any criterion
        return decide(config, {r.k: {"objective": float(r.objective)} for r in results})
    selection = decide(config, criteria(x, results, config, seed))
    if "stability" in rule.criteria:
        cramped = sorted(k for k in ks if k > subsample_size(x.shape[0], k, config) / 5)
        if cramped:
            selection.notes.append(
                f"K={cramped[0]} and above leave fewer than 5 items per cluster in a "
                f"{subsample_size(x.shape[0], cramped[0], config)}-item subsample: their stability is a weak guide"
            )
    return selection
