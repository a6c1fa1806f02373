"""SweepService: texts in, a recorded K sweep out (embeddings, k-LLMmeans per K, scores, files, provenance).

One run embeds the texts through the cache (rows that cannot be embedded are reported, get label
-1, and are left out of the clustering), runs `algorithms.run_sweep` over [k_min, k_max] with an
optional summariser (k-LLMmeans: summaries of sampled members replace the centroids; summary texts
are embedded through the same cache), and writes into the output folder, each file recorded in
`call_artifacts` with its sha256 under the sweep's `run` group:

- `report.json`: per K the scores, stability, label metrics (with labels), sizes, summaries and
  representatives (input rows); `best_k` and the rule; the config; the PCA; the counts;
- `labels_k{K}.npy`: int32 cluster of every input row, in input order (-1: not embedded);
- `clusters.parquet`: long format, one row per (input row, K): `row`, `k`, `label`, `text`
  (plus `reference` when labels were given).

Provenance: a `run` group (metadata: config, embedding model, summariser, source) with `step`
links to the `embedding_batch` group of the texts (position 0) and, with a summariser, the
`summarization_batch` group of the summary calls (1) and the `embedding_batch` group of the
summary embeddings (2), chained by `depends_on`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from studyllm_core.algorithms import SweepConfig, SweepResult
from studyllm_core.errors import InputError, StudyllmError
from studyllm_core.logging_config import get_logger
from studyllm_core.services.artifacts import ArtifactService
from studyllm_core.services.capture.cache_key import unusable_rows
from studyllm_core.services.capture.recording import ensure_run_group
from studyllm_core.services.capture.embedding import EmbeddingService, ProgressFn
from studyllm_core.services.provenance import ProvenanceService, RunStamp, new_run_id
from studyllm_core.services.capture.summarization import SummarizationService, summarizer_from_spec
from studyllm_core.services.sweep.methods import check_method_fits
from studyllm_core.services.sweep.recipe import SweepRecipe, label_codes

log = get_logger("services.sweep")

REPORT_FILE = "report.json"
CLUSTERS_FILE = "clusters.parquet"
NOT_EMBEDDED = -1
Notice = Callable[[str], None]


def labels_file(k: int) -> str:
    """Name of the labels file of one K."""
    return f"labels_k{k}.npy"


@dataclass
class SweepOutcome:
    """The sweep's report (as written to report.json), its result, and where everything went."""

    report: dict[str, Any]
    result: SweepResult
    rows: np.ndarray  # input rows that were clustered, in order
    labels: dict[int, np.ndarray]  # K -> int32 label of every input row (-1: not embedded)
    files: dict[str, Any]
    run_group_id: int
    failures: dict[int, str] = field(default_factory=dict)  # input row -> why it has no vector
    # Wall seconds of each step: "embed" (vectors from the cache or the provider), "pca", "k_loop" and
    # "per_k" {K: s}, "second_pass" (algorithms.focus, after the K loop), "write" (files and their records).
    # Timing only: printed by --json, not in report.json.
    seconds: dict[str, Any] = field(default_factory=dict)

    @property
    def best_k(self) -> int | None:
        return self.result.best_k

    def summary(self) -> dict[str, Any]:
        """What `studyllm sweep --json` prints: best K, per-K scores, counts, files and the run group."""
        return {
            "best_k": self.result.best_k,
            "rule": self.result.rule,
            "choice": self.result.choice.to_dict() if self.result.choice else None,
            "per_k": [item.scores.to_row() for item in self.result.per_k],
            "counts": self.report["counts"],
            "pca": self.report["pca"],
            "plan": self.report.get("plan"),
            "notes": self.report["notes"],
            "files": self.files,
            "group_id": self.run_group_id,
            "seconds": {key: ({str(k): v for k, v in value.items()} if isinstance(value, dict) else value)
                        for key, value in self.seconds.items()},
        }


def usable_count(texts: Sequence[object], max_chars: int) -> int:
    """How many texts the embedding service would send (the rest fail without an API call)."""
    return len(texts) - len(unusable_rows(texts, max_chars))


class SweepService:
    """K sweeps of texts with one embedding model and an optional summariser, recorded end to end.

    `summarizer` is a spec ("extractive" or "PROVIDER:MODEL", keys from the environment); a bad
    spec or a missing key fails here, before any API call. Call `close()` (or use `with`) when done.
    """

    def __init__(
        self,
        embedder: EmbeddingService,
        summarizer: str | None = None,
        *,
        summarizer_base_url: str | None = None,
        timeout: float | None = None,
    ) -> None:
        self.embedder = embedder
        self.engine = embedder.engine
        self.provenance = ProvenanceService(self.engine)
        self.summarizer_spec = summarizer
        self.summarizer: SummarizationService | None = None
        if summarizer is not None:
            self.summarizer = summarizer_from_spec(summarizer, self.engine, base_url=summarizer_base_url, timeout=timeout)
        self.recipe = SweepRecipe(embedder, self.summarizer)

    def __enter__(self) -> SweepService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the summariser's background loop (if there is a summariser)."""
        if self.summarizer is not None:
            self.summarizer.close()

    # -- checks ---------------------------------------------------------------------------------

    def check(self, texts: Sequence[str], config: SweepConfig, labels: Sequence[object] | None = None) -> int:
        """InputError for settings that cannot work on these texts; returns how many texts are usable.

        Runs before any API call: the config, K against the number of usable texts, labels' length,
        and that summary rounds fit below max_iter (the recipe's checks).
        """
        try:
            config.validate()
        except ValueError as exc:
            raise InputError(str(exc)) from None
        if labels is not None and len(labels) != len(texts):
            raise InputError(f"{len(labels)} labels for {len(texts)} texts: give one label per text")
        usable = usable_count(texts, self.embedder.max_chars)
        if usable == 0:
            raise InputError(f"none of the {len(texts)} texts is usable (all empty or unreadable): check the text column")
        unusable = len(texts) - usable
        extra = f" ({unusable} of {len(texts)} rows are empty or unreadable)" if unusable else ""
        self.recipe.check(config, usable, f"usable texts{extra}")
        check_method_fits(config.method, config.rank_r, config.k_max, usable, f"usable texts{extra}")
        return usable

    def _uses_llm(self, config: SweepConfig) -> bool:
        return self.recipe.uses_llm(config)

    # -- the run --------------------------------------------------------------------------------

    def run(
        self,
        texts: Sequence[str],
        config: SweepConfig,
        out_dir: str | Path,
        *,
        labels: Sequence[object] | None = None,
        name: str | None = None,
        source: dict[str, Any] | None = None,
        progress: ProgressFn | None = None,
        notice: Notice | None = None,
    ) -> SweepOutcome:
        """Embed, sweep K, write the files into `out_dir` and record the provenance (module docstring).

        `labels` are reference labels (any values; compared as text) for ACC/NMI/ARI over the rows
        that were clustered; `name` names the run
        group (default `sweep:<UTC time>`); `source` is kept in its metadata; `progress` gets
        (done, total) while embedding, `notice` one line per finished step.
        """
        texts = list(texts)
        self.check(texts, config, labels)
        run_id, emb_group, stamp = self._start_run(name, config, source)
        try:
            outcome = self._execute(texts, config, Path(out_dir), labels, source, run_id, emb_group, stamp, progress, notice)
        except BaseException as exc:
            try:
                self._set_run_metadata(run_id, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:1000]})
            except Exception:  # noqa: BLE001 - the database may be what failed; the original error matters
                log.warning("could not mark sweep run %s as failed", run_id)
            raise
        self._set_run_metadata(
            run_id, {"status": "done", "best_k": outcome.best_k, "counts": outcome.report["counts"], "files": outcome.files}
        )
        return outcome

    async def arun(
        self,
        texts: Sequence[str],
        config: SweepConfig,
        out_dir: str | Path,
        *,
        labels: Sequence[object] | None = None,
        name: str | None = None,
        source: dict[str, Any] | None = None,
        progress: ProgressFn | None = None,
        notice: Notice | None = None,
    ) -> SweepOutcome:
        """`run` for async code (a notebook's `await`): runs in a worker thread, the event loop stays free."""
        return await asyncio.to_thread(
            self.run, texts, config, out_dir, labels=labels, name=name, source=source, progress=progress, notice=notice
        )

    def _execute(
        self,
        texts: list[str],
        config: SweepConfig,
        out_dir: Path,
        labels: Sequence[object] | None,
        source: dict[str, Any] | None,
        run_id: int,
        emb_group: int,
        stamp: RunStamp,
        progress: ProgressFn | None,
        notice: Notice | None,
    ) -> SweepOutcome:
        say = notice or (lambda message: None)
        notes: list[str] = []
        uses_llm = self._uses_llm(config)
        if self.summarizer is not None and not uses_llm:
            notes.append("llm_rounds=0: the summariser is not used, the sweep is plain k-means")
        started = time.perf_counter()
        outcome = self.embedder.embed(texts, group_id=emb_group, progress=progress)
        seconds: dict[str, Any] = {"embed": time.perf_counter() - started}
        say(f"{outcome.texts:,} texts ({outcome.unique:,} unique): {outcome.cached:,} vectors from the cache, "
            f"{outcome.embedded:,} embedded, {outcome.failed:,} failed, in {seconds['embed']:.1f} s")
        rows = np.flatnonzero(outcome.ok)
        if rows.size == 0:
            first = next(iter(outcome.failures.items()), (0, "not embedded"))
            raise StudyllmError(
                f"none of the {len(texts)} texts could be embedded (row {first[0]}: {first[1]}); "
                "fix the input or run again (vectors already stored are reused)"
            )
        if rows.size < config.k_max:
            raise StudyllmError(
                f"only {rows.size} of {len(texts)} texts could be embedded, fewer than k_max={config.k_max}: "
                "lower k_max or run again to retry the failed texts"
            )
        x = outcome.vectors if rows.size == len(texts) else outcome.vectors[rows]  # no copy when all embedded
        config_run, pca_note = _fit_pca_dim(config, x.shape[1])
        notes += [pca_note] if pca_note else []
        clustered_texts = [texts[i] for i in rows]
        truth = label_codes([labels[i] for i in rows]) if labels is not None else None

        groups = self.recipe.llm_groups(emb_group, self._run_name(run_id), self._run_name(run_id), 1, stamp=stamp) if uses_llm else None
        steps = self.recipe.begin(x, clustered_texts, config_run, labels=truth, groups=groups, notice=say)
        # The sweep holds the projected N x pca_dim vectors only: the N x dim embeddings go before the K loop.
        del x
        outcome.vectors = np.empty((0, 0), dtype=np.float32)
        started = time.perf_counter()
        for _ in steps:
            pass
        sweep = steps.run
        seconds.update(pca=sweep.seconds["pca"], k_loop=time.perf_counter() - started, per_k=dict(sweep.seconds["per_k"]))
        if sweep.error is not None:
            raise sweep.error
        choice = steps.choose()  # after the second pass, which may update sweep.results
        assert choice is not None
        seconds["second_pass"] = sweep.seconds["second_pass"]
        result = SweepResult(
            config=config_run, per_k=sweep.results, best_k=choice.k, rule=choice.rule, choice=choice, pca=sweep.pca,
            n_summarize_calls=sweep.n_summarize_calls, plan=sweep.plan,
        )
        if sweep.plan is not None and sweep.plan.large:
            notes.append(sweep.plan.describe())
        summarize_group = groups[0] if groups else None
        if result.pca is not None and config.pca_dim is not None:
            if result.pca["dim"] < config_run.pca_dim:  # pca_svd_project keeps at most one dimension per text
                notes.append(f"pca_dim={config_run.pca_dim} is more than the {rows.size} embedded texts: "
                             f"projecting to {result.pca['dim']}")
            result.pca = {**result.pca, "requested_dim": config.pca_dim, "clamped": result.pca["dim"] != config.pca_dim}

        full_labels = {item.k: _in_input_order(item.clustering.labels, rows, len(texts)) for item in result.per_k}
        counts = {
            **{key: value for key, value in outcome.summary().items() if key != "group_id"},
            "clustered": int(rows.size),
            "api_requests": outcome.api_requests + sweep.summary_embedding_api_requests,
            "summary_embedding_api_requests": sweep.summary_embedding_api_requests,
            "summarize_calls": result.n_summarize_calls,
        }
        report = {
            "group_id": run_id,
            "best_k": result.best_k,
            "rule": result.rule,
            "choice": choice.to_dict(),
            "config": asdict(config),
            "pca": result.pca,
            "plan": sweep.plan.to_dict() if sweep.plan else None,
            "embedding": self._embedding_info(emb_group),
            "summarizer": self._summarizer_info(summarize_group),
            "source": source,
            "counts": counts,
            "notes": notes,
            "per_k": [_per_k_entry(item.to_dict(), rows) for item in result.per_k],
            "failed_rows": [{"row": row, "reason": reason} for row, reason in outcome.failures.items()],
        }
        started = time.perf_counter()
        files = self._write(out_dir, report, texts, labels, full_labels, run_id)
        seconds["write"] = time.perf_counter() - started
        report["files"] = files
        return SweepOutcome(report, result, rows, full_labels, files, run_id, dict(outcome.failures), seconds)

    # -- provenance -----------------------------------------------------------------------------

    def _start_run(self, name: str | None, config: SweepConfig, source: dict[str, Any] | None) -> tuple[int, int, RunStamp]:
        """The run group and the step group of the texts' embeddings, each with a record of this run (a
        `cli-...` run id: `studyllm provenance --run` shows it), and the stamp the later steps record with."""
        stamp_id = new_run_id()
        metadata = {
            "run_id": stamp_id,
            "kind": "sweep",
            "status": "running",
            "config": asdict(config),
            "embedding": {"provider": self.embedder.provider_name, "model": self.embedder.model,
                          "dimensions": self.embedder.dimensions},
            "summarizer": self.summarizer_spec,
            "source": source,
        }
        embedding = metadata["embedding"]
        stamp = RunStamp(stamp_id, {k: metadata[k] for k in ("config", "embedding", "summarizer", "source")},
                         versions={"embedding": f"{embedding['provider']}:{embedding['model']}"})
        run_id = ensure_run_group(self.engine, "run", name, label="sweep", metadata=metadata)
        self.provenance.add_record(run_id, stamp)
        emb_group = self.provenance.record_step(
            "embedding_batch", f"{self._run_name(run_id)}:embeddings", run_id=run_id, position=0,
            metadata=metadata["embedding"], stamp=stamp,
        )
        return run_id, emb_group, stamp

    def _set_run_metadata(self, run_id: int, metadata: dict[str, Any]) -> None:
        """Merge `metadata` into the run group's (status, results)."""
        self.provenance.groups.ensure_group("run", self._run_name(run_id), metadata=metadata)

    def _run_name(self, run_id: int) -> str:
        group = self.provenance.groups.get_group(run_id)
        assert group is not None
        return group.name

    def _embedding_info(self, group_id: int) -> dict[str, Any]:
        e = self.embedder
        return {"provider": e.provider_name, "model": e.model, "dimensions": e.dimensions, "group_id": group_id}

    def _summarizer_info(self, group_id: int | None) -> dict[str, Any] | None:
        if self.summarizer is None:
            return None
        inference = self.summarizer.inference
        return {"spec": self.summarizer_spec, "provider": inference.provider_name, "model": inference.model,
                "group_id": group_id}

    # -- files ----------------------------------------------------------------------------------

    def _write(
        self,
        out_dir: Path,
        report: dict[str, Any],
        texts: list[str],
        labels: Sequence[object] | None,
        full_labels: dict[int, np.ndarray],
        run_id: int,
    ) -> dict[str, Any]:
        """Labels per K, the clusters table and the report, each written atomically and recorded."""
        artifacts = ArtifactService(self.engine, out_dir)
        label_paths = {}
        for k, values in full_labels.items():
            path = out_dir / labels_file(k)
            artifacts.write(values, path, group_id=run_id, metadata={"k": k})
            label_paths[str(k)] = str(path)
        clusters_path = out_dir / CLUSTERS_FILE
        artifacts.write_parquet_parts(_clusters_parts(texts, labels, full_labels), clusters_path, group_id=run_id)
        report_path = out_dir / REPORT_FILE
        files = {"report": str(report_path), "clusters": str(clusters_path), "labels": label_paths}
        artifacts.write({**report, "files": files}, report_path, group_id=run_id)
        return files


def _fit_pca_dim(config: SweepConfig, dim: int) -> tuple[SweepConfig, str | None]:
    """The config with pca_dim cut to the embedding dimension, and a note when it was cut."""
    if config.pca_dim is None or config.pca_dim <= dim:
        return config, None
    note = f"pca_dim={config.pca_dim} is more than the {dim} embedding dimensions: projecting to {dim}"
    return replace(config, pca_dim=dim), note


def _in_input_order(labels: np.ndarray, rows: np.ndarray, n: int) -> np.ndarray:
    full = np.full(n, NOT_EMBEDDED, dtype=np.int32)
    full[rows] = labels
    return full


def _per_k_entry(entry: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    """One K of the report with representatives as input rows (the sweep numbers the clustered rows only)."""
    reps = entry.get("representatives") or []
    return {**entry, "representatives": [[int(rows[i]) for i in cluster] for cluster in reps]}


def _clusters_parts(texts: list[str], labels: Sequence[object] | None, full_labels: dict[int, np.ndarray]) -> Iterator[pa.Table]:
    """Long format, one row per (input row, K), one Arrow table (a Parquet row group) per K: the text and
    reference columns are built once and shared, so memory is O(N), not O(N x K)."""
    n = len(texts)
    row = pa.array(np.arange(n, dtype=np.int64))
    text = pa.array([_printable(t) for t in texts], type=pa.string())
    reference = None if labels is None else pa.array([str(v) for v in labels], type=pa.string())
    for k in sorted(full_labels):
        columns = {"row": row, "k": pa.array(np.full(n, k, dtype=np.int32)), "label": pa.array(full_labels[k]),
                   "text": text}
        if reference is not None:
            columns["reference"] = reference
        yield pa.table(columns)


def _printable(text: object) -> str:
    """A text as valid UTF-8: undecodable input bytes (lone surrogates) become U+FFFD."""
    if not isinstance(text, str):
        return "" if text is None else str(text)
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
