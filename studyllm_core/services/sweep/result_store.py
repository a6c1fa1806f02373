"""The per-K results of a dataset's sweeps, kept between runs (what the Dagster pipeline stores).

Each (dataset, K) has three provenance groups named `<table>[<dataset>|<K>]` (the pipeline's
materialisation groups of the K partitions): `clusters` (step), `cluster_summaries`
(summarization_batch) and `cluster_metrics` (metrics). A K's three tables are written as Parquet
artifacts recorded in those groups; its status lives in the metrics group's metadata: `running`
from the moment a run takes the K, then `done` (with the scores), `failed` or `refused` (with the
reason). A K left `running` by a run that ended is reported as missing. A run stores a dataset's
K while it holds their sweep locks (`hold`), so two runs never sweep the same K of a dataset at once. A dataset's report is read
from these records in one query, whichever runs made them.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from studyllm_core.algorithms import KResult
from studyllm_core.db.dataset_locks import dataset_lock
from studyllm_core.db.groups import GroupRepository
from studyllm_core.services.artifacts import ArtifactService
from studyllm_core.services.provenance import materialization_group
from studyllm_core.services.sweep.recipe import (
    DONE,
    Notice,
    SweepReport,
    SweepRun,
    clusters_table,
    metrics_frame,
    metrics_row,
    summaries_table,
    sweep_report,
)

TABLES = {"clusters": "step", "cluster_summaries": "summarization_batch", "cluster_metrics": "metrics"}
RUNNING = "running"


def k_group_name(table: str, dataset: str, k: int) -> str:
    """The group of one K's table: `clusters[demo|9]` (the pipeline names K partitions `demo|9`)."""
    return materialization_group(table, f"{dataset}|{k}")


class SweepResults:
    """Store and read the per-K results of datasets' sweeps (module docstring)."""

    def __init__(self, engine: Engine, root: Path) -> None:
        self.engine = engine
        self.groups = GroupRepository(engine)
        self.artifacts = ArtifactService(engine, root)

    def group_ids(self, dataset: str, k: int) -> dict[str, int]:
        """Table -> group id for one K (created where missing)."""
        return {table: self.groups.ensure_group(kind, k_group_name(table, dataset, k)) for table, kind in TABLES.items()}

    def hold(self, dataset: str, ks: Sequence[int], *, holder: str, notice: Notice | None = None) -> AbstractContextManager[None]:
        """The sweep locks of the dataset's `ks` for a block that stores their results: one run per
        (dataset, K) at a time, whoever launched it; a run whose K overlap waits, saying for whom
        (studyllm_core.db.dataset_locks); other K of the dataset go on."""
        return dataset_lock(self.engine, dataset, ks, holder=holder, notice=notice)

    def start(self, dataset: str, ks: Sequence[int], *, run_id: str | None = None) -> None:
        """Mark the K a run takes as running (so a run that dies leaves them reported as missing)."""
        names = [k_group_name("cluster_metrics", dataset, k) for k in ks]
        meta = {"status": RUNNING, "reason": None, "run_id": run_id}
        self.groups.ensure_groups(TABLES["cluster_metrics"], names, metadata=[meta] * len(names))

    def save(self, dataset: str, item: KResult, rows: np.ndarray, texts: Sequence[str], *, run_id: str | None = None) -> dict[str, Any]:
        """Write one done K's three tables as recorded artifacts and mark it done; returns its scores."""
        ids = self.group_ids(dataset, item.k)
        tables = {
            "clusters": clusters_table([item], rows),
            "cluster_summaries": summaries_table([item], rows, texts),
            "cluster_metrics": pd.DataFrame([{"k": item.k, "status": DONE, "reason": None, **metrics_row(item)}]),
        }
        for table, frame in tables.items():
            path = self.artifacts.path_for(table, dataset, str(item.k), suffix=".parquet")
            self.artifacts.write(frame, path, group_id=ids[table], metadata={"dataset": dataset, "k": item.k, "run_id": run_id})
        scores = metrics_row(item)
        self.groups.ensure_group(
            TABLES["cluster_metrics"], k_group_name("cluster_metrics", dataset, item.k),
            metadata={"status": DONE, "reason": None, "run_id": run_id, "scores": scores},
        )
        return scores

    def finish(self, dataset: str, run: SweepRun, *, run_id: str | None = None) -> None:
        """Record the failed and refused K of a run (its done K were saved as they finished)."""
        for k in [*run.failures, *run.refused]:
            self.groups.ensure_group(
                TABLES["cluster_metrics"], k_group_name("cluster_metrics", dataset, k),
                metadata={"status": run.status(k), "reason": run.reason(k), "run_id": run_id, "scores": None},
            )

    def records(self, dataset: str, ks: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """One record per K of the dataset (or per K of `ks`): k, status, reason, the run that last took
        it and, when done, its scores."""
        prefix = f"cluster_metrics[{dataset}|"
        found = {}
        for group in self.groups.with_prefix(TABLES["cluster_metrics"], prefix):
            k = group.name[len(prefix):-1]
            if k.isdigit():
                found[int(k)] = group.metadata_json or {}
        wanted = sorted(found) if ks is None else sorted(set(ks))
        records = []
        for k in wanted:
            meta = found.get(k, {})
            status = meta.get("status") or "not run"
            if status == RUNNING:
                status, reason = "not run", f"its run ({meta.get('run_id') or 'unknown'}) ended before it"
            else:
                reason = meta.get("reason")
            records.append({"k": k, "status": status, "reason": reason, "run_id": meta.get("run_id"),
                            **((meta.get("scores") or {}) if status == DONE else {})})
        return records

    def report(self, dataset: str, ks: Sequence[int] | None = None) -> SweepReport:
        """Every K of the dataset (or of `ks`) with its status and scores; K chosen among the done ones."""
        return sweep_report(metrics_frame(self.records(dataset, ks)))

    def summaries(self, dataset: str, k: int) -> pd.DataFrame:
        """The cluster summaries and representatives of one done K."""
        return self.artifacts.read(self.artifacts.path_for("cluster_summaries", dataset, str(k), suffix=".parquet"))

    def clusters(self, dataset: str, k: int) -> pd.DataFrame:
        """The cluster of every text of one done K: row (the dataset row), k, label, cost."""
        return self.artifacts.read(self.artifacts.path_for("clusters", dataset, str(k), suffix=".parquet"))
