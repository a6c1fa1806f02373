"""The sweep's second pass: re-optimise the K values where the choice of K is made, then choose again.

After the sweep, the rule (kselection's consensus) names a K. Its criteria read each K's k-means
optimum, and a K whose restarts and breathing stopped in a worse local optimum than its neighbours'
moves them: on 10 blobs, K=11 ended above K=10's objective at two seeds of five (2052.8 vs 2050.1)
and the knee moved from 10 to 9; the vMF BIC moves by hundreds when one K's objective is 0.1% off.
The k-means optimum never rises with K (K + 1 centroids can keep K's and add one), so a K worse
than that bound allows is provably not at its optimum, and its neighbours' solutions are better
starts. The pass therefore takes the swept K within FOCUS_SPAN of the chosen one, and for each
starts Lloyd from the solution of the swept K below (grown by breathing in) and above (shrunk by
breathing out), ascending then descending so an improvement travels; a K keeps the lower objective
(never worse than the sweep's). The per-K rows (objective, BIC, scores) of the improved K are
recomputed (subsampling stability reads no clustering of the sweep and is kept) and the rule is
applied once more. Cost: about four Lloyd runs per K in the window, a few per cent of the sweep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .breathing import resize
from .distances import sq_dist_to_assigned
from .kmeans import refine
from .kselection import mixture_bic
from .metrics import item_costs, representatives
from .results import ClusteringResult
from .sweep import KChoice, KResult, SweepConfig, SweepPlan, choose_k, one_blas_thread, score_k
from .validation import as_matrix, normalize_rows

GAIN = 1e-6  # relative objective decrease a neighbour's fit must bring to replace a K's clustering
FOCUS_SPAN = 0.2  # the window: swept K within this share of the first choice (and its swept neighbours)
PASS_TEXT = ("then the swept K within {span}% of the chosen K (at least its swept neighbours) are re-optimised "
             "from their neighbouring K's solutions (grown or shrunk by one breath, then Lloyd; a K keeps the "
             "lower objective) and the rule is applied once more to the updated per-K results")


@dataclass(frozen=True)
class FocusReport:
    """What the second pass did: the first choice, the K it re-optimised, the objective of each K it
    improved (before, after), and the choice it led to."""

    first_k: int | None
    first_interval: tuple[int, int] | None
    ks: list[int]
    improved: dict[int, tuple[float, float]] = field(default_factory=dict)
    skipped: str | None = None  # why the pass did not run

    def note(self, final_k: int | None) -> str:
        """One line for the report's notes."""
        if self.skipped:
            return f"second pass not run: {self.skipped}"
        gains = ", ".join(f"K={k} {b:.6g} -> {a:.6g}" for k, (b, a) in sorted(self.improved.items()))
        return (f"second pass re-optimised K {_span(self.ks)} from their neighbours' solutions: "
                + (f"{len(self.improved)} improved ({gains})" if self.improved else "none improved")
                + f"; first choice K={self.first_k}, after the pass K={final_k}")

    def to_dict(self) -> dict[str, Any]:
        return {"first_k": self.first_k, "first_interval": list(self.first_interval) if self.first_interval else None,
                "ks": list(self.ks), "improved": {str(k): [b, a] for k, (b, a) in sorted(self.improved.items())},
                "skipped": self.skipped}


def _span(ks: Sequence[int]) -> str:
    return f"{ks[0]}..{ks[-1]} ({len(ks)} values)" if len(ks) > 1 else str(ks[0])


def focus_ks(k: int, ks: Sequence[int], span: float = FOCUS_SPAN) -> list[int]:
    """The swept K the second pass re-optimises: those within `span` x k of k (rounded up), and at
    least k's swept neighbours (a range of 1-2 K gives them all)."""
    ks = sorted(ks)
    if k not in ks:
        raise ValueError(f"K={k} was not swept; pass one of {ks}.")
    i = ks.index(k)
    reach = math.ceil(span * k)
    near = {c for c in ks if abs(c - k) <= reach} | set(ks[max(0, i - 1): i + 2])
    return sorted(near)


def reoptimise(
    Z: np.ndarray,
    chosen: dict[int, ClusteringResult],
    window: Sequence[int],
    *,
    max_iter: int = 300,
    plan: SweepPlan | None = None,
) -> dict[int, ClusteringResult]:
    """The K of `window` re-optimised from their swept neighbours' solutions (module docstring): a new
    dict of every K's clustering, where a K of the window holds the lowest objective among its own and
    the fits started from the swept K just below and above (over the whole `chosen`, updated as the
    pass goes); a K not improved keeps its very object. With a large-N `plan` the pass runs on its fit
    sample, as the sweep's restarts do, and only an improved K is refined on all rows, kept when its
    objective over all rows is lower too. Deterministic."""
    fit_rows = plan.fit_rows if plan is not None else None
    if fit_rows is None:
        return _neighbour_pass(Z, dict(chosen), window, max_iter)
    sample = Z[fit_rows]
    on_sample = {k: _restricted(sample, c, fit_rows) for k, c in chosen.items()}
    moved = _neighbour_pass(sample, dict(on_sample), window, max_iter)
    out = dict(chosen)
    for k in window:
        if moved[k] is not on_sample[k]:  # refined as the sweep refines: its prepared rows, its stop rule
            fit = refine(moved[k], plan.refine_rows_of(Z), max_iter=plan.refine_iter, rel_tol=plan.refine_tol)
            if fit.objective < chosen[k].objective * (1.0 - GAIN):
                out[k] = fit
    return out


def _neighbour_pass(x: np.ndarray, current: dict[int, ClusteringResult], window: Sequence[int],
                    max_iter: int) -> dict[int, ClusteringResult]:
    """The window's K, ascending then descending, each replaced by a fit grown or shrunk from the swept K
    just below or above when that fit's objective is lower by more than GAIN (relative)."""
    ks = sorted(current)
    for order in (list(window), list(window)[::-1]):
        for k in order:
            i = ks.index(k)
            for j in (i - 1, i + 1):
                if 0 <= j < len(ks):
                    fit = resize(x, current[ks[j]], k, max_iter=max_iter)
                    if fit.objective < current[k].objective * (1.0 - GAIN):
                        current[k] = replace(fit, seed=current[k].seed, n_iter=current[k].n_iter + fit.n_iter,
                                             summaries=None)
    return current


def _restricted(sample: np.ndarray, result: ClusteringResult, rows: np.ndarray) -> ClusteringResult:
    """`result` (a fit of all rows) read on the sample `rows`: their labels and the objective over them."""
    x = as_matrix(sample, "Z")
    if result.metric == "cosine":
        x = normalize_rows(x, "Z")
    labels = result.labels[rows]
    sq = float(sq_dist_to_assigned(x, np.asarray(result.centroids, dtype=x.dtype), labels).sum())
    return replace(result, labels=labels, objective=0.5 * sq if result.metric == "cosine" else sq)


def refocus(
    Z: np.ndarray,
    per_k: Sequence[KResult],
    config: SweepConfig,
    plan: SweepPlan | None = None,
    truth: np.ndarray | None = None,
    *,
    use_llm: bool = False,
) -> tuple[list[KResult], KChoice]:
    """The second pass over a finished sweep (module docstring): per-K results with the window's
    improved K re-scored, and the choice made on them; the choice's details carry `second_pass`
    (FocusReport.to_dict) and a note. Skipped, and said so, with summaries (k-LLMmeans' own
    clusterings are kept, as for breathing), when config.refocus is off, or when the first choice is
    undecided. The one call the CLI sweep and run_sweep make after their K loop."""
    items = sorted(per_k, key=lambda item: item.k)
    first = choose_k([item.scores.to_row() for item in items])
    skipped = None
    if not config.refocus:
        skipped = "turned off (SweepConfig.refocus)"
    elif use_llm or config.method != "kllmmeans":
        skipped = "the clusterings are k-LLMmeans' own (summaries) or not k-means"
    elif first.k is None:
        skipped = "the rule could not decide"
    if skipped:
        return items, _with_pass(first, FocusReport(first.k, first.interval, [], skipped=skipped), first.k)
    window = focus_ks(first.k, [item.k for item in items])
    before = {item.k: item.clustering for item in items}
    with one_blas_thread():  # as the K loop ran (sweep_k)
        after = reoptimise(Z, before, window, max_iter=config.max_iter, plan=plan)
        improved = {k: (before[k].objective, after[k].objective) for k in window if after[k] is not before[k]}
        if improved:
            items = [_rescored(Z, item, after[item.k], config, plan, truth) if item.k in improved else item
                     for item in items]
    report = FocusReport(first.k, first.interval, window, improved)
    final = choose_k([item.scores.to_row() for item in items]) if improved else first
    return items, _with_pass(final, report, first.k)


def _with_pass(choice: KChoice, report: FocusReport, first_k: int | None) -> KChoice:
    span = round(100 * FOCUS_SPAN)
    rule = choice.rule + "; " + PASS_TEXT.format(span=span)
    details = {**choice.details, "notes": [*choice.notes, report.note(choice.k)], "second_pass": report.to_dict()}
    return KChoice(k=choice.k, rule=rule, details=details)


def _rescored(Z: np.ndarray, item: KResult, clustering: ClusteringResult, config: SweepConfig,
              plan: SweepPlan | None, truth: np.ndarray | None) -> KResult:
    """`item` with `clustering` as its chosen one: costs, scores, representatives and the criteria that
    read the clustering (objective, BIC) recomputed; subsampling stability kept (it reads none)."""
    costs = item_costs(Z, clustering.labels, clustering.centroids, config.metric)
    criteria = dict(item.scores.criteria)
    rows = plan.criteria_rows if plan is not None else None
    x = as_matrix(Z if rows is None else Z[rows], "Z")
    if config.metric == "cosine":
        x = normalize_rows(x, "Z")
    labels = clustering.labels if rows is None else clustering.labels[rows]
    criteria.update(objective=float(clustering.objective), bic=mixture_bic(x, labels, clustering.k, config.metric))
    scores = score_k(Z, clustering.labels, [r.labels for r in item.restarts.runs], costs, config, truth, criteria)
    reps = representatives(Z, clustering.labels, clustering.centroids, config.n_representatives, config.metric,
                           costs=costs)
    restarts = replace(item.restarts, chosen=clustering)
    return KResult(restarts=restarts, scores=scores, representatives=reps, costs=costs)
