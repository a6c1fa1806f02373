"""The K-sweep recipe: what `studyllm sweep` (SweepService) and the Dagster sweep assets both run.

Given the texts in a clustering space (the PCA projection Z, and `project` for new vectors), the
recipe runs `algorithms.run_sweep` over a K range with the services wired in: k-LLMmeans rounds
summarise clusters through the SummarizationService and embed the summaries through the embedding
cache, every call recorded under the caller's step. Each requested K ends up done, failed (with
its one-line reason) or not run, and K is chosen by `algorithms.choose_k` among the done ones.

"Cluster summary" means one thing everywhere: the last k-LLMmeans round's summary of each cluster
of the chosen restart (no extra LLM call). Without a summariser, or with llm_rounds=0, clusters
have representatives (the members closest to the centroid) but no summary.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from studyllm_core.algorithms import KChoice, KResult, SweepConfig, choose_k, run_sweep
from studyllm_core.algorithms.kmeans import Project
from studyllm_core.errors import InputError, StudyllmError
from studyllm_core.services.embedding import EmbeddingService
from studyllm_core.services.provenance import ProvenanceService
from studyllm_core.services.summarization import SummarizationService

DONE, FAILED, NOT_RUN = "done", "failed", "not run"
Notice = Callable[[str], None]


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
    error: BaseException | None = None
    n_summarize_calls: int = 0
    summary_embedding_api_requests: int = 0
    pca: dict[str, Any] | None = None

    @property
    def done(self) -> list[int]:
        return [item.k for item in self.results]

    @property
    def not_run(self) -> list[int]:
        finished = set(self.done) | set(self.failures)
        return [k for k in self.requested if k not in finished]

    @property
    def complete(self) -> bool:
        return self.error is None and not self.failures and not self.not_run

    def status(self, k: int) -> str:
        if k in self.failures:
            return FAILED
        return DONE if k in self.done else NOT_RUN

    def statuses(self) -> dict[str, str]:
        """Requested K -> "done", "failed: <reason>" or "not run" (JSON keys are strings)."""
        return {str(k): f"{FAILED}: {self.failures[k]}" if k in self.failures else self.status(k) for k in self.requested}

    def choice(self) -> KChoice | None:
        """K chosen among the done ones (None when none is done)."""
        rows = [item.scores.to_row() for item in self.results]
        return choose_k(rows) if rows else None

    def problem(self) -> str | None:
        """One line naming the K that failed or were not run, or None when every K is done."""
        if self.complete:
            return None
        parts = [f"K={k} failed: {reason}" for k, reason in self.failures.items()]
        if self.not_run:
            parts.append(f"K {format_ks(self.not_run)} not run")
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
        try:
            config.validate()
        except ValueError as exc:
            raise InputError(str(exc)) from None
        check_k_range(config.k_min, config.k_max, n, what)
        if self.uses_llm(config) and config.llm_rounds * config.iters_per_round >= config.max_iter:
            raise InputError(
                f"llm_rounds={config.llm_rounds} x iters_per_round={config.iters_per_round} leaves no iteration "
                f"of max_iter={config.max_iter}: lower llm_rounds"
            )

    def llm_groups(self, step_id: int, name: str, run: str | None = None, position: int = 0) -> tuple[int, int]:
        """The summarization_batch group of the round summaries (made from `step_id`'s inputs) and the
        embedding_batch group of their embeddings, both steps of `run` when given."""
        assert self.summarizer is not None
        inference = self.summarizer.inference
        run_id = self.provenance.groups.ensure_group("run", run) if run else None
        summaries = self.provenance.record_step(
            "summarization_batch", f"{name}:summaries", inputs=[step_id], run_id=run_id, position=position,
            metadata={"provider": inference.provider_name, "model": inference.model, "purpose": "k-LLMmeans rounds"},
        )
        embeddings = self.provenance.record_step(
            "embedding_batch", f"{name}:summary-embeddings", inputs=[summaries], run_id=run_id, position=position + 1,
            metadata={"provider": self.embedder.provider_name, "model": self.embedder.model,
                      "dimensions": self.embedder.dimensions, "purpose": "summary centroids"},
        )
        return summaries, embeddings

    def run(
        self,
        X: np.ndarray,
        texts: Sequence[str],
        config: SweepConfig,
        *,
        labels: np.ndarray | None = None,
        project: Project | None = None,
        groups: tuple[int, int] | None = None,
        notice: Notice | None = None,
    ) -> SweepRun:
        """Sweep K over [config.k_min, config.k_max] and return every K's outcome.

        A failed K does not raise: the returned run keeps the finished K, names the failed one with
        its reason and lists the K not run, with the exception in `error`. An interrupt (Ctrl-C, a
        cancelled Dagster run) is returned in `error` too, with the finished K, for the caller to
        re-raise once it kept them.

        X is projected by PCA when config.pca_dim is set; otherwise it is the clustering space and
        `project` maps summary embeddings into it. `groups` are the (summaries, summary embeddings)
        groups of llm_groups(); InputError for settings that cannot work on these texts.
        """
        self.check(config, len(texts))
        outcome = SweepRun(config=config, requested=list(range(config.k_min, config.k_max + 1)))
        summarize = embed = None
        if self.uses_llm(config):
            assert self.summarizer is not None
            summaries_group, embeddings_group = groups if groups is not None else (None, None)
            summarize = self.summarizer.as_summarize_fn(group_id=summaries_group)
            embed = SummaryEmbedder(self.embedder, embeddings_group)
        try:
            result = run_sweep(
                X, list(texts), config, summarize=summarize, embed=embed, project=project, labels=labels,
                progress=notice, on_k=outcome.results.append,
            )
            outcome.pca = result.pca
        except ValueError as exc:  # settings the data cannot satisfy (checked again by the algorithms)
            raise InputError(str(exc)) from None
        except BaseException as exc:  # noqa: BLE001 - reported with the finished K kept (docstring)
            outcome.error = exc
            failed = next((k for k in outcome.requested if k not in outcome.done), None)
            if failed is not None and isinstance(exc, Exception):
                outcome.failures[failed] = one_line(exc)
        finally:
            outcome.n_summarize_calls = sum(item.restarts.n_summarize_calls for item in outcome.results)
            outcome.summary_embedding_api_requests = embed.api_requests if isinstance(embed, SummaryEmbedder) else 0
        return outcome


def label_codes(values: Sequence[object]) -> np.ndarray:
    """Reference labels as integer codes (sorted by their text, so the same labels give the same codes)."""
    _, codes = np.unique(np.asarray([str(v) for v in values]), return_inverse=True)
    return codes


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


# -- tables: what the CLI writes and the Dagster assets store ------------------------------------


def clusters_table(run: SweepRun, rows: np.ndarray) -> pd.DataFrame:
    """Long format, one row per (clustered text, done K): `row` (input row), `k`, `label`, `cost`."""
    ks = [item.k for item in run.results]
    n = len(rows)
    return pd.DataFrame(
        {
            "row": np.tile(np.asarray(rows, dtype=np.int64), len(ks)),
            "k": np.repeat(np.asarray(ks, dtype=np.int32), n),
            "label": np.concatenate([item.clustering.labels for item in run.results]) if ks else np.empty(0, np.int32),
            "cost": np.concatenate([item.costs for item in run.results]) if ks else np.empty(0),
        }
    )


def summaries_table(run: SweepRun, rows: np.ndarray, texts: Sequence[str]) -> pd.DataFrame:
    """One row per (done K, cluster): size, summary (None without LLM rounds), representatives and their rows."""
    records = []
    for item in run.results:
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


METRIC_COLUMNS = ["k", "status", "reason", "score", "silhouette", "silhouette_method", "stability_ari",
                  "stability_ari_std", "coverage", "dispersion", "objective", "summarize_calls"]


def metrics_table(run: SweepRun) -> pd.DataFrame:
    """One row per requested K: status (done, failed, not run), the reason of a failure, and the scores of a done K."""
    by_k = {item.k: item for item in run.results}
    records = []
    for k in run.requested:
        record: dict[str, Any] = {"k": k, "status": run.status(k), "reason": run.failures.get(k)}
        item = by_k.get(k)
        if item is not None:
            record.update(item.scores.to_row())
            record["objective"] = float(item.clustering.objective)
            record["summarize_calls"] = int(item.restarts.n_summarize_calls)
        records.append(record)
    frame = pd.DataFrame.from_records(records)
    extra = [c for c in frame.columns if c not in METRIC_COLUMNS]
    return frame.reindex(columns=METRIC_COLUMNS + extra)


@dataclass
class SweepReport:
    """Every requested K side by side, the chosen K and the K that are not done."""

    table: pd.DataFrame  # metrics_table rows, plus `best`
    choice: KChoice | None
    failed: dict[int, str]
    not_done: list[int]

    @property
    def best_k(self) -> int | None:
        return self.choice.k if self.choice else None

    def problem(self) -> str | None:
        if not self.failed and not self.not_done:
            return None
        parts = [f"K={k} failed: {reason}" for k, reason in self.failed.items()]
        missing = [k for k in self.not_done if k not in self.failed]
        if missing:
            parts.append(f"K {format_ks(missing)} missing (not run)")
        return "; ".join(parts)


def sweep_report(metrics: pd.DataFrame) -> SweepReport:
    """The report of one sweep from its metrics_table: K chosen by choose_k among the done K."""
    table = metrics.sort_values("k").reset_index(drop=True)
    done = table[table["status"] == DONE]
    rows = [{key: _plain(value) for key, value in record.items()} for record in done.to_dict("records")]
    choice = choose_k(rows) if rows else None
    table["best"] = table["k"] == (choice.k if choice else -1)
    failed = {int(r.k): str(r.reason) for r in table.itertuples() if r.status == FAILED}
    not_done = [int(k) for k in table.loc[table["status"] != DONE, "k"]]
    return SweepReport(table=table, choice=choice, failed=failed, not_done=not_done)


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
