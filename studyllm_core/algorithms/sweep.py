"""Sweep over the number of clusters K: several seeded restarts per K, quality and stability measures
for each, and a stated rule for choosing K (kselection's default rule, on criteria each K records)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from .breathing import BreathingReport, breathe
from .kmeans import Embed, Project, Summarize, k_llmmeans, refine_costs, refine_rows
from .kselection import KSelectionConfig, decide, rule_text
from .kselection import criteria as selection_criteria
from .lloyd import Rows
from .metrics import (
    DEFAULT_SILHOUETTE_SAMPLE,
    Silhouette,
    Stability,
    coverage,
    item_costs,
    label_metrics,
    representatives,
    silhouette,
    stability,
)
from .projection import PCA_FIT_SAMPLE, pca_svd_project
from .results import ClusteringResult
from .subspaces import k_subspaces
from .validation import as_matrix, check_metric, check_positive_int

METHODS = ("kllmmeans", "ksubspaces")
SUMMARIZE_RESTARTS = ("all", "best")
# How K is chosen: kselection's default rule ("consensus"), picked on benchmarks/k_selection.py
# (docs/methods.md). Each K records the criteria it needs (K_CRITERIA) when it is swept, so the choice
# is made from the per-K rows alone: the CLI's sweep, its recipe and the Dagster report decide alike.
K_SELECTION = KSelectionConfig()
K_CRITERIA = ("objective", "subsample_stability", "bic")
# The descriptive `score` column of every K (it chose K before kselection; the benchmark's baseline).
BEST_K_RULE = (
    "best_k maximises score = mean of (silhouette + 1) / 2 and the mean pairwise ARI between restarts "
    "(both in [0, 1]; a term that is undefined, e.g. stability with one restart, is left out); ties go "
    "to the smaller K. Silhouette rewards separated clusters, stability rewards a K that restarts "
    "reproduce; together they penalise both merging true groups and splitting one."
)
# Rows the restarts fit on before the chosen one is refined on all rows (Faiss's k-means trains on at
# most 256 points per centroid: 20,000 covers K <= 78 at that rate), and the refinement's Lloyd passes:
# at most REFINE_ITER, stopping after a pass that lowers the objective by at most REFINE_TOL of it (from
# centroids converged on the sample, the second pass gains ~1e-5 and each later one ~2e-6 at a million
# blobs: docs/architecture.md).
FIT_SAMPLE = 20_000
REFINE_ITER = 10
REFINE_TOL = 1e-4
CRITERIA_SAMPLE = 10_000  # rows the K-selection criteria (subsampling stability, BIC) are computed on
# Above LARGE_N items a sweep samples (SweepPlan): every cost then grows linearly with N. It is the fit
# sample's size, so a sweep's cost does not jump down as N crosses it: at 100,000 a sweep of 50,000
# structureless texts took 157 s in its K loop against 46 s at a million (every restart, breath and
# criterion on all rows), and on 50,000 von Mises-Fisher blobs the sampled plan took 0.25-0.34x the time
# with the same chosen K (+-1 at K*=30) and NMI within 0.8 points (benchmarks/large_n_plan.py;
# docs/architecture.md, Large N).
LARGE_N = FIT_SAMPLE


@dataclass
class SweepConfig:
    """What to sweep and how. pca_dim=None clusters the embeddings as given."""

    k_min: int = 2
    k_max: int = 10
    n_restarts: int = 5
    pca_dim: int | None = None
    metric: str = "cosine"
    llm_rounds: int = 2  # used only when a summariser is given; 0 = plain k-means
    iters_per_round: int = 5
    samples_per_cluster: int = 10
    seed: int = 0
    method: str = "kllmmeans"  # "kllmmeans" | "ksubspaces"
    rank_r: int = 1  # subspace rank for method="ksubspaces"
    silhouette_sample_size: int = DEFAULT_SILHOUETTE_SAMPLE
    max_iter: int = 300
    n_representatives: int = 5
    coverage_min_size: int = 5
    # "best": restarts run without the LLM; the best one is re-run from its seed with summaries
    # (LLM calls = K x llm_rounds per K); stability is measured on the LLM-free restarts.
    # "all": every restart is a full k-LLMmeans run (LLM calls = K x llm_rounds x n_restarts per K).
    summarize_restarts: str = "best"
    # Large N (sweep_plan): above large_n items the restarts fit on fit_sample_size rows and the chosen
    # one is refined on all rows; the K criteria use criteria_sample_size rows. At or below: all rows.
    large_n: int = LARGE_N
    fit_sample_size: int = FIT_SAMPLE
    refine_iter: int = REFINE_ITER
    refine_tol: float = REFINE_TOL  # 0: always refine_iter passes (unless Lloyd converges)
    criteria_sample_size: int = CRITERIA_SAMPLE
    # Breathing k-means (algorithms/breathing.py) on the chosen restart of each K (with a summariser and
    # summarize_restarts "best": the restart the summary rounds start from); at large N on the fit
    # sample, before the refinement. Depth: centroids per breath
    # (None: breathing.depth_for(K) = max(5, K // 3)).
    breathing: bool = True
    breathing_depth: int | None = None
    # The second pass (algorithms/focus.py): after the K loop, the K near the chosen one are re-optimised
    # from their neighbours' solutions and K is chosen again (k-means without a summariser only).
    refocus: bool = True

    def validate(self) -> None:
        """Reject settings that cannot work whatever the data; data-dependent checks happen in run_sweep."""
        check_positive_int(self.k_min, "k_min", minimum=2)
        check_positive_int(self.k_max, "k_max", minimum=2)
        if self.k_min > self.k_max:
            raise ValueError(f"k_min={self.k_min} is larger than k_max={self.k_max}; swap them.")
        check_positive_int(self.n_restarts, "n_restarts")
        if self.pca_dim is not None:
            check_positive_int(self.pca_dim, "pca_dim")
        check_metric(self.metric)
        if self.method not in METHODS:
            raise ValueError(f"method={self.method!r} is not supported; use one of {', '.join(METHODS)}.")
        if self.summarize_restarts not in SUMMARIZE_RESTARTS:
            raise ValueError(f"summarize_restarts must be one of {', '.join(SUMMARIZE_RESTARTS)}.")
        check_positive_int(self.llm_rounds, "llm_rounds", minimum=0)
        check_positive_int(self.iters_per_round, "iters_per_round")
        check_positive_int(self.samples_per_cluster, "samples_per_cluster")
        check_positive_int(self.rank_r, "rank_r", minimum=0)
        check_positive_int(self.silhouette_sample_size, "silhouette_sample_size", minimum=2)
        check_positive_int(self.max_iter, "max_iter")
        check_positive_int(self.n_representatives, "n_representatives")
        check_positive_int(self.coverage_min_size, "coverage_min_size")
        check_positive_int(self.large_n, "large_n", minimum=2)
        check_positive_int(self.fit_sample_size, "fit_sample_size", minimum=2)
        check_positive_int(self.refine_iter, "refine_iter")
        if not (isinstance(self.refine_tol, (int, float)) and 0.0 <= self.refine_tol < 1.0):
            raise ValueError(f"refine_tol must be a number in [0, 1), got {self.refine_tol!r}.")
        check_positive_int(self.criteria_sample_size, "criteria_sample_size", minimum=2)
        if self.breathing_depth is not None:
            check_positive_int(self.breathing_depth, "breathing_depth")


@dataclass(frozen=True)
class SweepPlan:
    """How a sweep of `n` items runs, chosen by N (sweep_plan): every row everywhere (small N), or
    restarts fitted on `fit_rows` then refined on all rows, and the K criteria on `criteria_rows`
    (large N). The same samples serve every K, so neighbouring K differ by K, not by the draw."""

    n: int
    large_n: int
    fit_rows: np.ndarray | None = None  # sorted row indices; None: all rows
    criteria_rows: np.ndarray | None = None
    silhouette_sample: int | None = None  # None: exact silhouette
    refine_iter: int = REFINE_ITER
    breathing: bool = False  # breathing k-means after each K's best restart
    breathing_depth: int | None = None  # its depth (None: max(5, K // 3))
    refine_tol: float = REFINE_TOL
    metric: str = "cosine"
    # The rows prepared for the refinement (refine_rows_of), kept for the next K of the sweep.
    _prepared: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def large(self) -> bool:
        return self.fit_rows is not None

    def refine_rows_of(self, z: np.ndarray) -> Rows:
        """The sweep's rows `z` prepared for the refinement (kmeans.refine_rows: checked, unit rows for
        cosine, transposed copy, norms), once per plan: the first K pays for it, every later K of the
        sweep refines on the same prepared rows (at a million rows this was a third of a refinement)."""
        held = self._prepared.get("rows")
        if held is None or held[0] is not z:
            self._prepared["rows"] = held = (z, refine_rows(z, self.metric))
        return held[1]

    def describe(self) -> str:
        """One line saying what was chosen and why (progress line and report)."""
        sil = f"silhouette on a {self.silhouette_sample:,} sample" if self.silhouette_sample else "exact silhouette"
        depth = "max(5, K // 3)" if self.breathing_depth is None else str(self.breathing_depth)
        breathing = (f"; breathing k-means (depth {depth}) on each K's best restart (with summaries: the "
                     "start of the summary rounds)" if self.breathing else "")
        if not self.large:
            return f"N={self.n:,} <= {self.large_n:,}: k-means restarts and K criteria on all N, {sil}{breathing}"
        assert self.fit_rows is not None and self.criteria_rows is not None
        stop = (f" until a pass lowers the objective by at most {self.refine_tol:g} of it" if self.refine_tol > 0
                else "")
        return (f"N={self.n:,} > {self.large_n:,}: sampled k-means (restarts fit on a {self.fit_rows.size:,} sample, "
                f"the best refined by up to {self.refine_iter} Lloyd passes over all N{stop}; restart stability on "
                f"that sample), K criteria on a {self.criteria_rows.size:,} sample, {sil}{breathing}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n, "large_n": self.large_n, "large": self.large,
            "fit_sample": None if self.fit_rows is None else int(self.fit_rows.size),
            "criteria_sample": None if self.criteria_rows is None else int(self.criteria_rows.size),
            "silhouette_sample": self.silhouette_sample, "refine_iter": self.refine_iter if self.large else None,
            "refine_tol": self.refine_tol if self.large else None,
            "breathing": self.breathing, "breathing_depth": self.breathing_depth,
            "text": self.describe(),
        }


def sample_rows(n: int, size: int, seed: int, purpose: int) -> np.ndarray:
    """`size` distinct rows of n (sorted), drawn from (seed, purpose): the same rows for every K."""
    return np.sort(np.random.default_rng([seed, purpose, n]).choice(n, size=size, replace=False))


def sweep_plan(n: int, config: SweepConfig) -> SweepPlan:
    """The plan of a sweep of n items (SweepPlan). Large N only for k-means (k-subspaces is exact at any N)."""
    sil = config.silhouette_sample_size if n > config.silhouette_sample_size else None
    breathing = config.breathing and config.method == "kllmmeans"
    if n <= config.large_n or config.method != "kllmmeans":
        return SweepPlan(n, config.large_n, silhouette_sample=sil, breathing=breathing,
                         breathing_depth=config.breathing_depth)
    fit = sample_rows(n, min(n, config.fit_sample_size), config.seed, 1)
    crit = sample_rows(n, min(n, config.criteria_sample_size), config.seed, 2)
    return SweepPlan(n, config.large_n, fit, crit, sil, config.refine_iter, breathing, config.breathing_depth,
                     config.refine_tol, config.metric)


def restart_seed(seed: int, k: int, restart: int) -> int:
    """Seed of one restart, derived deterministically from the sweep seed, K and the restart index."""
    return int(np.random.SeedSequence([seed, k, restart]).generate_state(1)[0])


def _json(value: Any) -> Any:
    """Plain-Python, strict-JSON version of a value (NaN/inf become None)."""
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _check_llm_method(config: SweepConfig, summarize: Summarize | None, embed: Embed | None) -> bool:
    """Whether summaries are requested (both methods take them: k-LLMmeans and k-subspaces)."""
    return summarize is not None or embed is not None


@dataclass
class Restarts:
    """The restarts of one K and the one reported."""

    k: int
    runs: list[ClusteringResult]
    seeds: list[int]
    best: int  # index of the restart with the lowest objective
    chosen: ClusteringResult  # runs[best], or its re-run with summaries (summarize_restarts="best")
    n_summarize_calls: int  # over all runs of this K
    breathing: BreathingReport | None = None  # what breathing did to runs[best] (config.breathing)
    refine_passes: int | None = None  # Lloyd passes over all rows that refined the chosen fit (large N)
    costs: np.ndarray | None = None  # item_costs of every row, from the refinement's last pass (large N)


def cluster_restarts(
    Z: np.ndarray,
    texts: Sequence[str] | None,
    k: int,
    config: SweepConfig,
    *,
    summarize: Summarize | None = None,
    embed: Embed | None = None,
    project: Project | None = None,
    fit_rows: np.ndarray | None = None,
    rows: Rows | None = None,
) -> Restarts:
    """config.n_restarts runs of config.method at one K on the (already projected) Z, seeded by
    restart_seed(config.seed, k, restart); the lowest objective is chosen. With summarize and embed,
    every restart is a k-LLMmeans run (summarize_restarts="all"), or the restarts run without the LLM
    and only the chosen seed is re-run with it ("best"). With `fit_rows` (large N, SweepPlan) the
    restarts run on those rows only (their labels and objectives are the sample's) and the chosen one
    is refined by Lloyd on every row of Z (config.refine_iter passes at most, fewer by config.refine_tol;
    `rows`: Z already prepared by refine_rows, as a sweep does once for every K). With config.breathing
    (breathing_applies) the chosen restart is improved by breathing k-means before that refinement, and
    with summaries ("best") the summary rounds start from the breathed centroids; the restarts
    themselves (their stability) are unchanged."""
    config.validate()
    use_llm = _check_llm_method(config, summarize, embed)
    full = Z
    if fit_rows is not None:
        Z = Z[fit_rows]
        texts = None if texts is None else [texts[i] for i in fit_rows]

    def run(seed: int, with_llm: bool, init: np.ndarray | None = None) -> ClusteringResult:
        if config.method == "ksubspaces":
            return k_subspaces(
                Z, k, config.rank_r, seed, texts=texts, summarize=summarize if with_llm else None,
                embed=embed if with_llm else None, project=project, llm_rounds=config.llm_rounds,
                iters_per_round=config.iters_per_round, samples_per_cluster=config.samples_per_cluster,
                max_iter=config.max_iter, metric=config.metric,
            )
        return k_llmmeans(
            Z,
            texts,
            k,
            summarize=summarize if with_llm else None,
            embed=embed if with_llm else None,
            project=project,
            llm_rounds=config.llm_rounds,
            iters_per_round=config.iters_per_round,
            samples_per_cluster=config.samples_per_cluster,
            max_iter=config.max_iter,
            metric=config.metric,
            seed=seed,
            init=init,
        )

    seeds = [restart_seed(config.seed, k, r) for r in range(config.n_restarts)]
    llm_each = use_llm and config.summarize_restarts == "all"
    runs = [run(seed, llm_each) for seed in seeds]
    best = int(np.argmin([r.objective for r in runs]))
    chosen, report = runs[best], None
    breathes = breathing_applies(config, use_llm)
    if breathes:
        chosen, report = breathe(Z, chosen, depth=config.breathing_depth, max_iter=config.max_iter)
    if use_llm and not llm_each:  # the summary rounds start from the breathed restart, or re-run its seed
        chosen = run(seeds[best], True, init=chosen.centroids if breathes else None)
    passes = costs = None
    if fit_rows is not None:
        fitted = chosen.n_iter
        chosen, costs = refine_costs(chosen, full if rows is None else rows, max_iter=config.refine_iter,
                                     rel_tol=config.refine_tol)
        passes = chosen.n_iter - fitted
    rerun = use_llm and not llm_each
    calls = sum(r.n_summarize_calls for r in runs) + (chosen.n_summarize_calls if rerun else 0)
    return Restarts(k=k, runs=runs, seeds=seeds, best=best, chosen=chosen, n_summarize_calls=calls, breathing=report,
                    refine_passes=passes, costs=costs)


def one_blas_thread() -> AbstractContextManager[Any]:
    """One BLAS thread for a sweep's work, whatever N, as scikit-learn's KMeans limits BLAS in its own loop.
    Entered by the two calls a sweep makes per K and after its K loop, `sweep_k` and `focus.refocus`, so
    everything inside them runs this way. Why: the products (restarts, breathing and K criteria on at most
    a few tens of thousands of rows, the passes over all rows) are too small or too memory-bound for a second
    thread to pay: alone on the machine it bought 2-9% of the wall time for 1.6-1.8x the CPU, and when
    another process held one of two cores (Postgres, Dagster's services, another job) OpenBLAS's waiting
    threads made the same work 2.6x slower (docs/architecture.md, benchmarks/bench_blas_threads.py)."""
    import scipy.linalg  # noqa: F401 - scipy's own OpenBLAS (the criteria's), loaded now: the limit covers loaded ones
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def breathing_applies(config: SweepConfig, use_llm: bool) -> bool:
    """Whether cluster_restarts runs breathing k-means: when config.breathing asks for it, on k-means
    (method "kllmmeans") without summaries, or with summaries on the best restart ("best"), which the
    summary rounds then start from. Why: breathing reaches the better k-means optimum the summaries used
    to re-seed into, and summaries started there still move the partition toward the topics (Tweet: +0.59
    NMI, +3.55 ACC over breathing k-means, against +0.24 / +2.76 from a re-run seed: benchmarks/quality.py,
    docs/methods.md).
    With "all" every restart is k-LLMmeans' own and is left as it is; k-subspaces is another model."""
    return (config.breathing and config.method == "kllmmeans"
            and (not use_llm or config.summarize_restarts == "best"))


@dataclass(frozen=True)
class KScores:
    """Quality of one K: the inputs of the best-K rule plus descriptive measures."""

    k: int
    silhouette: Silhouette
    stability: Stability
    coverage: float
    dispersion: float
    label_metrics: dict[str, float] | None
    score: float  # see BEST_K_RULE (descriptive: K is chosen by K_SELECTION)
    criteria: dict[str, float] = field(default_factory=dict)  # K_CRITERIA of this K (and stability's spread)

    def to_row(self) -> dict[str, Any]:
        """Flat JSON-able row (NaN -> None); acc/nmi/ari only when ground truth was given."""
        return _json(
            {
                "k": self.k,
                "score": self.score,
                "silhouette": self.silhouette.value,
                "silhouette_method": self.silhouette.method,
                "stability_ari": self.stability.mean_ari,
                "stability_ari_std": self.stability.std_ari,
                "coverage": self.coverage,
                "dispersion": self.dispersion,
                **self.criteria,
                **(self.label_metrics or {}),
            }
        )


def k_criteria(Z: np.ndarray, chosen: ClusteringResult, seed: int, rows: np.ndarray | None = None) -> dict[str, float]:
    """What K_SELECTION needs from one K, computed on the vectors the sweep clustered: the objective,
    the subsampling stability at K (same half-samples for every K of a seed) and the mixture BIC of
    the chosen partition. With `rows` (large N) stability and BIC are computed on those rows only
    (the objective stays the one over all rows, comparable across K)."""
    if rows is not None:
        Z = Z[rows]
        chosen = replace(chosen, labels=chosen.labels[rows])
    row = selection_criteria(Z, [chosen], K_SELECTION, seed)[chosen.k]
    return {
        "objective": float(row["objective"]),
        "subsample_stability": float(row["stability"]),
        "subsample_stability_sd": float(row["stability_sd"]),
        "bic": float(row["bic"]),
    }


def score_k(
    Z: np.ndarray,
    labels: np.ndarray,
    restart_labels: Sequence[np.ndarray],
    costs: np.ndarray,
    config: SweepConfig,
    truth: np.ndarray | None = None,
    criteria: Mapping[str, float] | None = None,
) -> KScores:
    """Score one K from its chosen labels, every restart's labels and the per-item costs (item_costs):
    silhouette (sampled above config.silhouette_sample_size items), stability across restarts,
    coverage, dispersion (mean cost), label metrics against `truth`, the score of BEST_K_RULE, and
    the K-selection `criteria` (k_criteria) passed through."""
    labels = np.asarray(labels)
    sil = silhouette(Z, labels, config.metric, config.silhouette_sample_size, seed=config.seed)
    stab = stability(list(restart_labels))
    terms = [t for t in ((sil.value + 1) / 2, stab.mean_ari) if math.isfinite(t)]
    return KScores(
        k=int(labels.max()) + 1,
        silhouette=sil,
        stability=stab,
        coverage=coverage(labels, config.coverage_min_size),
        dispersion=float(np.mean(costs)),
        label_metrics=label_metrics(truth, labels) if truth is not None else None,
        score=float(np.mean(terms)) if terms else -math.inf,
        criteria=dict(criteria or {}),
    )


def sweep_k(
    Z: np.ndarray,
    texts: Sequence[str] | None,
    k: int,
    config: SweepConfig,
    *,
    summarize: Summarize | None = None,
    embed: Embed | None = None,
    project: Project | None = None,
    truth: np.ndarray | None = None,
    plan: SweepPlan | None = None,
) -> KResult:
    """The per-K step of a sweep on the projected Z: the restarts (k-LLMmeans rounds with summaries
    as config.summarize_restarts says), every item's cost, the scores and the representatives.
    `plan` (default sweep_plan(len(Z), config)) says which rows the restarts and criteria use; it runs on
    one BLAS thread (one_blas_thread)."""
    plan = plan or sweep_plan(len(Z), config)
    with one_blas_thread():
        rows = plan.refine_rows_of(Z) if plan.large else None
        restarts = cluster_restarts(Z, texts, k, config, summarize=summarize, embed=embed, project=project,
                                    fit_rows=plan.fit_rows, rows=rows)
        chosen = restarts.chosen
        costs = restarts.costs  # at large N from the refinement's last pass over the rows
        if costs is None:
            costs = item_costs(Z, chosen.labels, chosen.centroids, config.metric)
        scores = score_k(Z, chosen.labels, [r.labels for r in restarts.runs], costs, config, truth,
                         criteria=k_criteria(Z, chosen, config.seed, plan.criteria_rows))
        reps = representatives(Z, chosen.labels, chosen.centroids, config.n_representatives, config.metric,
                               costs=costs)
    return KResult(restarts=restarts, scores=scores, representatives=reps, costs=costs)


@dataclass(frozen=True)
class KChoice:
    """The chosen K (None when the rule could not decide: `details["notes"]` say why), the rule in
    words, and what else the rule reports: `interval` (a plausible K range) and `notes` (an edge of
    the swept range, what each criterion chose)."""

    k: int | None
    rule: str
    details: dict[str, Any]

    @property
    def interval(self) -> tuple[int, int] | None:
        found = self.details.get("interval")
        return (int(found[0]), int(found[1])) if found else None

    @property
    def notes(self) -> list[str]:
        return list(self.details.get("notes") or [])

    def describe(self) -> str:
        """One line for a report: the K and its interval, or why no K was chosen; then the notes."""
        if self.k is None:
            head = "no K chosen"
        else:
            low, high = self.interval or (self.k, self.k)
            head = f"K = {self.k} (plausible {low}..{high})"
        return "; ".join([head, *self.notes])

    def to_dict(self) -> dict[str, Any]:
        return _json({"k": self.k, "rule": self.rule, **self.details, "text": self.describe()})


def choose_k(per_k: Sequence[Mapping[str, Any]]) -> KChoice:
    """Choose K from the per-K rows (KScores.to_row(): k, objective, subsample_stability, bic, ...) by
    K_SELECTION. The one call every caller makes (CLI sweep, Dagster report), so the rule lives here only.
    Never a silent K: rows that lack the criteria, or a range the rule cannot decide, give k=None and a note."""
    if not per_k:
        raise ValueError("no K has been scored; cluster at least one K first.")
    table, missing = {}, []
    for row in per_k:
        values = {name: row.get(name) for name in K_CRITERIA}
        if any(v is None or not math.isfinite(float(v)) for v in values.values()):
            missing.append(int(row["k"]))
        table[int(row["k"])] = {"objective": values["objective"], "stability": values["subsample_stability"],
                                "bic": values["bic"]}
    if missing:
        ks = ", ".join(map(str, sorted(missing)))
        return KChoice(k=None, rule=rule_text(K_SELECTION), details={
            "interval": None,
            "notes": [f"K={ks} lack the K-selection criteria (swept by an older version, or not finite): "
                      "sweep them again to choose K"],
        })
    selection = decide(K_SELECTION, table)
    return KChoice(k=selection.k, rule=selection.rule, details={
        "interval": list(selection.interval) if selection.interval else None,
        "notes": selection.notes,
    })


def choose_best_k(scores: Mapping[int, float]) -> int:
    """The K with the highest score (BEST_K_RULE); ties go to the smaller K, undefined scores never win."""
    if not scores:
        raise ValueError("no K has been scored; cluster at least one K first.")
    finite = {int(k): float(v) for k, v in scores.items() if v is not None and math.isfinite(float(v))}
    if not finite:
        return min(int(k) for k in scores)
    return max(finite, key=lambda k: (finite[k], -k))


@dataclass
class KResult:
    """Everything measured for one K. The cluster summaries are the chosen restart's last k-LLMmeans
    round summaries (`clustering.summaries`; None without a summariser or with llm_rounds=0)."""

    restarts: Restarts
    scores: KScores
    representatives: list[list[int]]
    costs: np.ndarray  # item_costs of every item to its chosen centroid

    @property
    def summaries(self) -> list[str] | None:
        return self.restarts.chosen.summaries

    @property
    def k(self) -> int:
        return self.restarts.k

    @property
    def clustering(self) -> ClusteringResult:
        """The chosen restart."""
        return self.restarts.chosen

    def to_dict(self) -> dict[str, Any]:
        c, r, s = self.restarts.chosen, self.restarts, self.scores
        return _json(
            {
                "k": self.k,
                "objective": c.objective,
                "n_iter": c.n_iter,
                "converged": c.converged,
                "restart_seeds": r.seeds,
                "restart_objectives": [run.objective for run in r.runs],
                "best_restart": r.best,
                "stability": asdict(s.stability),
                "silhouette": s.silhouette.value,
                "silhouette_method": s.silhouette.method,
                "coverage": s.coverage,
                "dispersion": s.dispersion,
                "label_metrics": s.label_metrics,
                "score": s.score,
                "sizes": c.sizes,
                "representatives": self.representatives,
                "summaries": c.summaries,
                "n_summarize_calls": r.n_summarize_calls,
                "refine_passes": r.refine_passes,
            }
        )


@dataclass
class SweepResult:
    config: SweepConfig
    per_k: list[KResult]
    best_k: int | None  # None when the rule could not decide (choice.notes say why)
    rule: str = ""
    choice: KChoice | None = None
    pca: dict[str, Any] | None = None  # requested_dim, dim, clamped, explained_variance_ratio
    n_summarize_calls: int = 0
    plan: SweepPlan | None = None  # how the sweep ran at this N (SweepPlan.describe says it)

    def result_for(self, k: int) -> KResult:
        for item in self.per_k:
            if item.k == k:
                return item
        raise KeyError(f"K={k} was not part of the sweep")

    def to_dict(self) -> dict[str, Any]:
        return _json(
            {
                "config": asdict(self.config),
                "best_k": self.best_k,
                "rule": self.rule,
                "choice": self.choice.to_dict() if self.choice else None,
                "pca": self.pca,
                "plan": self.plan.to_dict() if self.plan else None,
                "n_summarize_calls": self.n_summarize_calls,
                "per_k": [item.to_dict() for item in self.per_k],
            }
        )


def check_sweep(
    X: np.ndarray,
    texts: Sequence[str] | None,
    config: SweepConfig,
    k_max: int,
    *,
    summarize: Summarize | None = None,
    embed: Embed | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """ValueError for inputs a sweep up to k_max cannot use; returns X as a matrix and the labels as an array."""
    config.validate()
    x = as_matrix(X, "X")
    n = x.shape[0]
    if k_max > n:
        raise ValueError(f"k_max={k_max} exceeds the number of items N={n}; use k_max <= {n}.")
    _check_llm_method(config, summarize, embed)
    if texts is not None and len(texts) != n:
        raise ValueError(f"texts has {len(texts)} entries but X has {n} rows; pass one text per row.")
    if config.method == "ksubspaces" and k_max * (config.rank_r + 1) > n:
        raise ValueError(f"k_max x (rank_r + 1) = {k_max * (config.rank_r + 1)} exceeds N={n}; lower k_max or rank_r.")
    truth = None
    if labels is not None:
        truth = np.asarray(labels)
        if truth.shape != (n,):
            raise ValueError(f"labels has shape {truth.shape}, expected ({n},); pass one ground-truth label per row.")
    return x, truth


def sweep_space(x: np.ndarray, pca_dim: int | None) -> tuple[np.ndarray, Project | None, dict[str, Any] | None]:
    """The clustering space of a sweep: X projected by PCA to pca_dim (with the map for new vectors and
    what the projection kept), or X itself when pca_dim is None. Above PCA_FIT_SAMPLE rows the axes are
    fitted on a sample of that many rows (`fit_sample` says how many; None: all) and every row is projected."""
    if pca_dim is None:
        return x, None, None
    projection = pca_svd_project(x, pca_dim, fit_sample=PCA_FIT_SAMPLE)
    info = {
        "requested_dim": projection.requested_dim,
        "dim": projection.dim,
        "clamped": projection.clamped,
        "explained_variance_ratio": float(projection.explained_variance_ratio.sum()),
        "fit_sample": projection.fit_size,
    }
    return projection.Z, projection.transform, info


def run_sweep(
    X: np.ndarray,
    texts: Sequence[str] | None,
    config: SweepConfig,
    *,
    summarize: Summarize | None = None,
    embed: Embed | None = None,
    project: Project | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
    on_k: Callable[[KResult], None] | None = None,
) -> SweepResult:
    """Cluster X for every K in [k_min, k_max] and choose K with choose_k.

    X is projected once by PCA when config.pca_dim is set (summary embeddings are projected the same
    way); with pca_dim=None, X is the clustering space already and `project` (if given) maps summary
    embeddings into it. `on_k` gets each K's result as soon as it is done, so a caller keeps the
    finished K when a later one fails. Each K gets n_restarts runs with seeds from restart_seed(config.seed, K, restart); the run
    with the lowest objective is reported, with stability (pairwise ARI across restarts), silhouette
    (sampled above silhouette_sample_size items), coverage, dispersion, representatives, sizes,
    summaries and, when ground-truth `labels` are given, ACC/NMI/ARI. With summarize and embed,
    LLM calls are sum over K of K x llm_rounds x n_restarts ("all") or K x llm_rounds ("best").
    Same inputs and seed give identical results.
    """
    x, truth = check_sweep(X, texts, config, config.k_max, summarize=summarize, embed=embed, labels=labels)
    say = progress or (lambda message: None)

    if config.pca_dim is not None and project is not None:
        raise ValueError("pass either pca_dim (the sweep projects X) or project (X is projected already), not both.")
    started = time.perf_counter()
    z, pca_project, pca_info = sweep_space(x, config.pca_dim)
    project = project or pca_project
    if pca_info is not None:
        say(describe_pca(x.shape[1], pca_info, time.perf_counter() - started))

    plan = sweep_plan(z.shape[0], config)
    say(plan.describe())
    per_k: list[KResult] = []
    ks = range(config.k_min, config.k_max + 1)
    for position, k in enumerate(ks, start=1):
        started = time.perf_counter()
        item = sweep_k(z, texts, k, config, summarize=summarize, embed=embed, project=project, truth=truth, plan=plan)
        per_k.append(item)
        if on_k is not None:
            on_k(item)
        say(describe_k(item, position, len(ks), time.perf_counter() - started))
    from .focus import refocus  # focus builds on this module's per-K step

    per_k, choice = refocus(z, per_k, config, plan, truth, use_llm=_check_llm_method(config, summarize, embed))
    return SweepResult(
        config=config,
        per_k=per_k,
        best_k=choice.k,
        rule=choice.rule,
        choice=choice,
        pca=pca_info,
        n_summarize_calls=sum(item.restarts.n_summarize_calls for item in per_k),
        plan=plan,
    )


def describe_k(item: KResult, position: int, total: int, seconds: float | None = None) -> str:
    """One progress line for a finished K (with the refinement's passes at large N and the seconds it
    took, when given)."""
    s = item.scores
    return (
        f"K={item.k} ({position}/{total}): objective {item.clustering.objective:.4g}, "
        f"silhouette {s.silhouette.value:.3f} ({s.silhouette.method}), "
        f"stability {s.stability.mean_ari:.3f}, score {s.score:.3f}"
        + (f", refined by {passes} Lloyd pass{'es' if passes != 1 else ''} over all N"
           if (passes := item.restarts.refine_passes) is not None else "")
        + (f" in {seconds:.1f} s" if seconds is not None else "")
    )


def describe_pca(n_dims: int, pca: Mapping[str, Any], seconds: float | None = None) -> str:
    """One progress line for the PCA step: dimensions, variance kept, the fit sample and the seconds."""
    sample = f", axes fitted on a {pca['fit_sample']:,} sample" if pca.get("fit_sample") else ""
    took = f" in {seconds:.1f} s" if seconds is not None else ""
    return f"PCA {n_dims} -> {pca['dim']} dims ({100 * pca['explained_variance_ratio']:.1f}% variance{sample}){took}"
