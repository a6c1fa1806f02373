"""The K-sweep recipe: what `studyllm sweep` (SweepService) and the Dagster sweep assets both run.

Given the texts (projected by PCA once, or already in a clustering space with `project` for new
vectors), the recipe runs the per-K step `algorithms.sweep_k` for every requested K with the
services wired in: k-LLMmeans rounds summarise clusters through the SummarizationService and embed
the summaries through the embedding cache, every call recorded in the caller's groups. Each
requested K ends up done, failed (with its one-line reason), refused (more than the texts) or not
run, and K is chosen by `algorithms.choose_k` among the done ones.

"Cluster summary" means one thing everywhere: the last k-LLMmeans round's summary of each cluster
of the chosen restart (no extra LLM call). Without a summariser, or with llm_rounds=0, clusters
have representatives (the members closest to the centroid) but no summary.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from studyllm_core.algorithms import KChoice, KResult, SweepConfig, choose_k, sweep_k
from studyllm_core.algorithms.focus import refocus
from studyllm_core.algorithms.kmeans import Project
from studyllm_core.algorithms.sweep import SweepPlan, check_sweep, describe_k, describe_pca, sweep_plan, sweep_space
from studyllm_core.errors import InputError, StudyllmError
from studyllm_core.services.capture.embedding import EmbeddingService
from studyllm_core.services.provenance import ProvenanceService, RunStamp
from studyllm_core.services.capture.summarization import SummarizationService

DONE, FAILED, NOT_RUN, REFUSED = "done", "failed", "not run", "refused"
Notice = Callable[[str], None]
LlmGroups = tuple[int | None, int | None] | Callable[[int], tuple[int | None, int | None]]


def check_k_range(k_min: int, k_max: int, n: int, what: str = "usable texts") -> None:
    """InputError unless 2 <= k_min <= k_max <= n (the one message every entry point gives)."""
    if k_min < 2 or k_min > k_max:
        raise InputError(f"K must be a range with 2 <= k_min <= k_max; got k_min={k_min}, k_max={k_max}")
    if k_max > n:
        raise InputError(f"k_max={k_max} exceeds the {n} {what}: use k_max <= {n}")


@dataclass
class SummaryEmbedder:
    """`embed(summaries) -> vectors` for k-LLMmeans, through the embedding cache, into one group."""

    embedder: EmbeddingService
    group_id: int | None
    api_requests: int = 0

    def __call__(self, summaries: list[str]) -> np.ndarray:
        outcome = self.embedder.embed(summaries, group_id=self.group_id)
        self.api_requests += outcome.api_requests
        if outcome.failed:
            index, reason = next(iter(outcome.failures.items()))
            raise StudyllmError(
                f"{outcome.failed} of {len(summaries)} cluster summaries could not be embedded (summary {index}: "
                f"{reason}); run again (stored vectors are reused) or use another summariser"
            )
        return outcome.vectors


@dataclass
class SweepRun:
    """Every requested K of one sweep: the done ones' results, the failed one's reason, the rest not run."""

    config: SweepConfig
    requested: list[int]
    results: list[KResult] = field(default_factory=list)
    failures: dict[int, str] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)  # K the texts cannot take, with why
    error: BaseException | None = None
    n_summarize_calls: int = 0
    summary_embedding_api_requests: int = 0
    pca: dict[str, Any] | None = None
    plan: SweepPlan | None = None  # how the sweep runs at this N (chosen by N, said in a notice)
    seconds: dict[str, Any] = field(default_factory=dict)  # wall seconds: "pca", "per_k" {K: s} (timing only)

    @property
    def done(self) -> list[int]:
        return [item.k for item in self.results]

    @property
    def not_run(self) -> list[int]:
        finished = set(self.done) | set(self.failures) | set(self.refused)
        return [k for k in self.requested if k not in finished]

    @property
    def complete(self) -> bool:
        """Every K that could run did (refused K are reported, not failures of the run)."""
        return self.error is None and not self.failures and not self.not_run

    def status(self, k: int) -> str:
        if k in self.failures:
            return FAILED
        if k in self.refused:
            return REFUSED
        return DONE if k in self.done else NOT_RUN

    def reason(self, k: int) -> str | None:
        return self.failures.get(k) or self.refused.get(k)

    def statuses(self) -> dict[str, str]:
        """Requested K -> "done", "failed: <reason>", "refused: <reason>" or "not run" (JSON keys are strings)."""
        return {str(k): self.status(k) + (f": {self.reason(k)}" if self.reason(k) else "") for k in self.requested}

    def choice(self) -> KChoice | None:
        """K chosen among the done ones from their per-K rows as they stand (None when none is done): what
        the Dagster report decides from the stored rows. `Sweep.choose` adds the second pass first."""
        rows = [item.scores.to_row() for item in self.results]
        return choose_k(rows) if rows else None

    def problem(self) -> str | None:
        """One line naming the K that failed, were not run or were refused; None when every K is done."""
        if self.complete and not self.refused:
            return None
        parts = [f"K={k} failed: {reason}" for k, reason in self.failures.items()]
        if self.not_run:
            parts.append(f"K {format_ks(self.not_run)} not run")
        if self.refused:
            parts.append(f"K {format_ks(list(self.refused))} refused (more than the texts)")
        if self.error is not None and not self.failures:
            parts.append(f"interrupted ({type(self.error).__name__})")
        return "; ".join(parts)


def format_ks(ks: Sequence[int]) -> str:
    """K values as compact ranges: 3..5, 9."""
    ks = sorted(ks)
    parts, start = [], None
    for i, k in enumerate(ks):
        start = k if start is None else start
        if i + 1 == len(ks) or ks[i + 1] != k + 1:
            parts.append(str(k) if start == k else f"{start}..{k}")
            start = None
    return ", ".join(parts)


class SweepRecipe:
    """The K sweep with its LLM wiring and provenance (module docstring).

    `embedder` embeds summary texts (through the cache); `summarizer` is None for plain k-means.
    """

    def __init__(self, embedder: EmbeddingService, summarizer: SummarizationService | None) -> None:
        self.embedder = embedder
        self.summarizer = summarizer
        self.provenance = ProvenanceService(embedder.engine)

    def uses_llm(self, config: SweepConfig) -> bool:
        return self.summarizer is not None and config.llm_rounds > 0

    def check(self, config: SweepConfig, n: int, what: str = "usable texts") -> None:
        """InputError for settings that cannot work on n texts, before any call."""
        self.check_settings(config)
        check_k_range(config.k_min, config.k_max, n, what)

    def check_settings(self, config: SweepConfig) -> None:
        """InputError for settings that cannot work whatever the texts."""
        try:
            config.validate()
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if self.uses_llm(config) and config.llm_rounds * config.iters_per_round >= config.max_iter:
            raise InputError(
                f"llm_rounds={config.llm_rounds} x iters_per_round={config.iters_per_round} leaves no iteration "
                f"of max_iter={config.max_iter}: lower llm_rounds"
            )

    def llm_groups(
        self, step_id: int, name: str, run: str | None = None, position: int = 0, *, stamp: RunStamp | None = None
    ) -> tuple[int, int]:
        """The summarization_batch group of the round summaries (made from `step_id`'s inputs) and the
        embedding_batch group of their embeddings, both steps of `run` when given (recorded by `stamp`'s run)."""
        assert self.summarizer is not None
        inference = self.summarizer.inference
        run_id = self.provenance.groups.ensure_group("run", run) if run else None
        summaries = self.provenance.record_step(
            "summarization_batch", f"{name}:summaries", inputs=[step_id], run_id=run_id, position=position,
            metadata={"provider": inference.provider_name, "model": inference.model, "purpose": "k-LLMmeans rounds"},
            stamp=stamp,
        )
        embeddings = self.provenance.record_step(
            "embedding_batch", f"{name}:summary-embeddings", inputs=[summaries], run_id=run_id, position=position + 1,
            metadata={"provider": self.embedder.provider_name, "model": self.embedder.model,
                      "dimensions": self.embedder.dimensions, "purpose": "summary centroids"},
            stamp=stamp,
        )
        return summaries, embeddings

    def run(self, X: np.ndarray, texts: Sequence[str], config: SweepConfig, **options: Any) -> SweepRun:
        """Sweep K and return every K's outcome: `begin(...)` run to the end (same arguments)."""
        sweep = self.begin(X, texts, config, **options)
        for _ in sweep:
            pass
        return sweep.run

    def begin(
        self,
        X: np.ndarray,
        texts: Sequence[str],
        config: SweepConfig,
        *,
        ks: Sequence[int] | None = None,
        labels: np.ndarray | None = None,
        project: Project | None = None,
        groups: LlmGroups | None = None,
        refuse_beyond_texts: bool = False,
        notice: Notice | None = None,
        on_k: Callable[[KResult], None] | None = None,
    ) -> Sweep:
        """Check the settings against the texts (InputError before any call) and return the sweep of
        `ks` (default [config.k_min, config.k_max]), which runs as it is iterated, one K at a time.

        X is projected by PCA when config.pca_dim is set; otherwise it is the clustering space and
        `project` maps summary embeddings into it. `groups` are the (summaries, summary embeddings)
        groups the LLM calls join: one pair, or a function of K. K beyond the texts is an InputError,
        or with `refuse_beyond_texts` a K the sweep refuses (and reports) while it runs the others.
        """
        requested = sorted(set(ks)) if ks is not None else list(range(config.k_min, config.k_max + 1))
        if not requested:
            raise InputError("no K to sweep: give at least one K")
        n = len(texts)
        self.check_settings(replace(config, k_min=requested[0], k_max=requested[-1]))
        refused = {k: f"K={k} exceeds the {n} usable texts" for k in requested if k > n}
        if refused and not refuse_beyond_texts:
            check_k_range(requested[0], requested[-1], n)
        runnable = [k for k in requested if k not in refused]
        try:
            x, truth = check_sweep(X, list(texts), config, max(runnable, default=2), labels=labels)
            if config.pca_dim is not None and project is not None:
                raise ValueError("pass either pca_dim or project, not both")
            started = time.perf_counter()
            z, pca_project, pca = sweep_space(x, config.pca_dim)
            seconds = time.perf_counter() - started
        except ValueError as exc:  # settings the data cannot satisfy
            raise InputError(str(exc)) from None
        run = SweepRun(config=config, requested=requested, refused=refused, pca=pca, plan=sweep_plan(z.shape[0], config),
                       seconds={"pca": seconds if pca is not None else 0.0, "per_k": {}})
        if pca is not None and notice is not None:
            notice(describe_pca(x.shape[1], pca, seconds))
        if notice is not None:
            notice(run.plan.describe())
        return Sweep(self, run, z, list(texts), truth, project or pca_project, runnable, groups, notice, on_k)


@dataclass
class Sweep:
    """A sweep in progress: iterating it runs one K after the other and yields each done K's result.
    A failure or an interrupt ends the iteration; `run` then says which K are done, which failed
    (with the exception in `run.error`) and which were not run."""

    recipe: SweepRecipe
    run: SweepRun
    z: np.ndarray
    texts: list[str]
    truth: np.ndarray | None
    project: Project | None
    runnable: list[int]
    groups: LlmGroups | None
    notice: Notice | None
    on_k: Callable[[KResult], None] | None

    def __iter__(self) -> Iterator[KResult]:
        recipe, run = self.recipe, self.run
        embedders: list[SummaryEmbedder] = []
        try:
            for position, k in enumerate(self.runnable, start=1):
                started = time.perf_counter()
                summarize = embed = None
                if recipe.uses_llm(run.config):
                    assert recipe.summarizer is not None
                    summaries_group, embeddings_group = (self.groups(k) if callable(self.groups) else self.groups) or (None, None)
                    summarize = recipe.summarizer.as_summarize_fn(group_id=summaries_group)
                    embed = SummaryEmbedder(recipe.embedder, embeddings_group)
                    embedders.append(embed)
                item = sweep_k(self.z, self.texts, k, run.config, summarize=summarize, embed=embed,
                               project=self.project, truth=self.truth, plan=run.plan)
                run.results.append(item)
                run.seconds["per_k"][k] = time.perf_counter() - started
                if self.on_k is not None:
                    self.on_k(item)
                if self.notice is not None:
                    self.notice(describe_k(item, position, len(self.runnable), run.seconds["per_k"][k]))
                yield item
        except GeneratorExit:  # the caller stopped iterating
            raise
        except BaseException as exc:  # noqa: BLE001 - reported with the finished K kept (class docstring)
            run.error = exc
            failed = next((k for k in self.runnable if k not in run.done), None)
            if failed is not None and isinstance(exc, Exception):
                run.failures[failed] = one_line(exc)
        finally:
            run.n_summarize_calls = sum(item.restarts.n_summarize_calls for item in run.results)
            run.summary_embedding_api_requests = sum(e.api_requests for e in embedders)

    def choose(self) -> KChoice | None:
        """K chosen among the done ones after the second pass (algorithms.focus.refocus: the K near the
        first choice re-optimised from their neighbours' solutions, their results replaced in `run`);
        None when none is done. Call it once the iteration has ended."""
        run = self.run
        if not run.results:
            return None
        started = time.perf_counter()
        run.results, choice = refocus(self.z, run.results, run.config, run.plan, self.truth,
                                      use_llm=self.recipe.uses_llm(run.config))
        run.seconds["second_pass"] = time.perf_counter() - started
        if self.notice is not None:
            self.notice(f"{choice.notes[-1]}, in {run.seconds['second_pass']:.1f} s")
        return choice


def label_codes(values: Sequence[object]) -> np.ndarray:
    """Reference labels as integer codes (sorted by their text, so the same labels give the same codes)."""
    _, codes = np.unique(np.asarray([str(v) for v in values]), return_inverse=True)
    return codes


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


# -- tables: what the CLI writes and the Dagster assets store ------------------------------------


def clusters_table(results: Sequence[KResult], rows: np.ndarray) -> pd.DataFrame:
    """Long format, one row per (clustered text, K): `row` (input row), `k`, `label`, `cost`."""
    ks = [item.k for item in results]
    n = len(rows)
    return pd.DataFrame(
        {
            "row": np.tile(np.asarray(rows, dtype=np.int64), len(ks)),
            "k": np.repeat(np.asarray(ks, dtype=np.int32), n),
            "label": np.concatenate([item.clustering.labels for item in results]) if ks else np.empty(0, np.int32),
            "cost": np.concatenate([item.costs for item in results]) if ks else np.empty(0),
        }
    )


def summaries_table(results: Sequence[KResult], rows: np.ndarray, texts: Sequence[str]) -> pd.DataFrame:
    """One row per (K, cluster): size, summary (None without LLM rounds), representatives and their rows."""
    records = []
    for item in results:
        sizes = item.clustering.sizes
        summaries = item.summaries or [None] * item.k
        for cluster, members in enumerate(item.representatives):
            records.append({
                "k": item.k,
                "cluster": cluster,
                "size": int(sizes[cluster]),
                "summary": summaries[cluster],
                "representatives": [texts[i] for i in members],
                "representative_rows": [int(rows[i]) for i in members],
            })
    columns = ["k", "cluster", "size", "summary", "representatives", "representative_rows"]
    return pd.DataFrame.from_records(records, columns=columns)


METRIC_COLUMNS = ["k", "status", "reason", "subsample_stability", "subsample_stability_sd", "bic", "objective",
                  "score", "silhouette", "silhouette_method", "stability_ari", "stability_ari_std", "coverage",
                  "dispersion", "summarize_calls"]


def metrics_row(item: KResult) -> dict[str, Any]:
    """The scores of one done K (JSON-able)."""
    return {**item.scores.to_row(), "objective": float(item.clustering.objective),
            "summarize_calls": int(item.restarts.n_summarize_calls)}


def metrics_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Metric records (k, status, reason and, for a done K, metrics_row) as a table in a fixed column order."""
    frame = pd.DataFrame.from_records(list(records))
    extra = [c for c in frame.columns if c not in METRIC_COLUMNS]
    return frame.reindex(columns=METRIC_COLUMNS + extra)


def metrics_table(run: SweepRun) -> pd.DataFrame:
    """One row per requested K: status (done, failed, refused, not run), its reason, and the scores of a done K."""
    by_k = {item.k: item for item in run.results}
    return metrics_frame([
        {"k": k, "status": run.status(k), "reason": run.reason(k), **(metrics_row(by_k[k]) if k in by_k else {})}
        for k in run.requested
    ])


@dataclass
class SweepReport:
    """Every requested K side by side, the chosen K and the K that are not done."""

    table: pd.DataFrame  # metrics_table rows, plus `best`
    choice: KChoice | None
    failed: dict[int, str]
    refused: dict[int, str]
    not_run: list[int]

    @property
    def best_k(self) -> int | None:
        return self.choice.k if self.choice else None

    @property
    def not_done(self) -> list[int]:
        return sorted([*self.failed, *self.refused, *self.not_run])

    def problem(self) -> str | None:
        """One line naming the K that failed, were refused or are missing; None when every K is done."""
        parts = [f"K={k} failed: {reason}" for k, reason in self.failed.items()]
        parts += [f"K={k} refused: {reason}" for k, reason in self.refused.items()]
        if self.not_run:
            parts.append(f"K {format_ks(self.not_run)} missing (not run)")
        return "; ".join(parts) or None


def sweep_report(metrics: pd.DataFrame) -> SweepReport:
    """The report of one sweep from its metrics_table: K chosen by choose_k among the done K."""
    table = metrics.sort_values("k").reset_index(drop=True)
    done = table[table["status"] == DONE]
    rows = [{key: _plain(value) for key, value in record.items()} for record in done.to_dict("records")]
    choice = choose_k(rows) if rows else None
    table["best"] = table["k"] == (choice.k if choice and choice.k is not None else -1)
    by_status = {status: {int(r.k): str(r.reason) for r in table.itertuples() if r.status == status}
                 for status in (FAILED, REFUSED)}
    not_run = [int(k) for k in table.loc[~table["status"].isin([DONE, FAILED, REFUSED]), "k"]]
    return SweepReport(table=table, choice=choice, failed=by_status[FAILED], refused=by_status[REFUSED], not_run=not_run)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def sweep_config(**settings: Any) -> SweepConfig:
    """A SweepConfig from keyword settings, unknown names refused (the defaults are SweepConfig's)."""
    try:
        return replace(SweepConfig(), **settings)
    except TypeError as exc:
        raise InputError(f"unknown sweep setting: {exc}") from None
