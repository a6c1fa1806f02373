"""`studyllm demo`: the whole sweep graph on the bundled demo corpus, offline, in this process.

Runs go to the durable instance under $STUDYLLM_HOME/dagster (Postgres storage), so `studyllm dev`
shows them afterwards. One run prepares the dataset, one run per K clusters, summarises and
scores it (one run per partition, as the artifact IO manager writes one file per partition), and
one run writes the report.
"""

import os
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from dagster._core.instance.ref import InstanceRef

from studyllm_core.algorithms import BEST_K_RULE
from studyllm_core.config import get_settings
from studyllm_core.db.engine import POOL_RECYCLE_SECONDS, open_database
from studyllm_core.db.groups import GroupRepository
from studyllm_core.db.server import DatabaseTarget
from studyllm_core.errors import InputError
from studyllm_core.services.datasets import DEMO
from studyllm_pipeline.definitions import SWEEP_ASSETS, build_resources
from studyllm_pipeline.instance import apply_environment, prepare_dagster_home
from studyllm_pipeline.partitions import datasets, sweep_partition_keys
from studyllm_pipeline.resources import EmbedderResource, SummarizerResource

DEMO_K_RANGE = (6, 14)  # the corpus has 10 topics
PREPARE = ["dataset_snapshot", "embeddings", "pca_projection", "pca_basis"]
PER_K = ["clusters", "cluster_summaries", "cluster_metrics"]
NO_COMPUTE_LOGS = {"compute_logs": {"module": "dagster._core.storage.noop_compute_log_manager", "class": "NoOpComputeLogManager"}}


def run_demo(
    k_min: int | None = None,
    k_max: int | None = None,
    *,
    prepared: tuple[Path, DatabaseTarget, dict[str, str]] | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Materialise every asset for the demo dataset and return the sweep report as a dict.

    `prepared` is `prepare_dagster_home()`'s result when the caller already started the database;
    `started` the `time.perf_counter()` the reported seconds count from.
    """
    start = time.perf_counter() if started is None else started
    low, high = k_min or DEMO_K_RANGE[0], k_max or DEMO_K_RANGE[1]
    try:
        keys = sweep_partition_keys(DEMO, low, high)  # validates the range before any work
    except ValueError as exc:
        raise InputError(f"{exc}: choose --k-min and --k-max within it") from None
    home, _, env = prepared or prepare_dagster_home()
    apply_environment(env)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # The demo's steps run in this process and print to this terminal, so per-step stdout/stderr
    # files are not captured (that costs two `tail` processes per step); the event log has every
    # message. Runs launched from `studyllm dev` capture them as dagster.yaml says.
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home), overrides=NO_COMPUTE_LOGS))
    # One long-lived process running many runs: keep one pooled connection per storage instead of
    # dagster-postgres's default of a new connection for every query (a third of each run's time).
    instance.optimize_for_webserver(statement_timeout=0, pool_recycle=POOL_RECYCLE_SECONDS, max_overflow=5)
    instance.add_dynamic_partitions(datasets.name, [DEMO])
    resources = {
        **build_resources(),
        "embedder": EmbedderResource(provider="local", model="all-MiniLM-L6-v2"),
        "summarizer": SummarizerResource(spec="extractive"),
    }
    tags = {"studyllm/dataset": DEMO, "studyllm/source": "studyllm demo"}

    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}  # the event log keeps everything

    def run(selection: list[str], partition_key: str) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            SWEEP_ASSETS, selection=selection, partition_key=partition_key, instance=instance, resources=resources,
            tags=tags, run_config=quiet,
        )

    prepared = run(PREPARE, DEMO)
    for key in keys:
        run(PER_K, key)
    report_run = run(["sweep_report"], DEMO)
    table: pd.DataFrame = report_run.output_for_node("sweep_report")
    snapshot: pd.DataFrame = prepared.output_for_node("dataset_snapshot")
    run_group = GroupRepository(open_database()).lookup("run", f"sweep[{DEMO}]")
    per_k = [_row(r) for r in table.to_dict("records")]
    best_k = int(table.loc[table["best"], "k"].iloc[0])
    return {
        "dataset": DEMO,
        "texts": len(snapshot),
        "labels": int(snapshot["label"].nunique()),
        "k_min": low,
        "k_max": high,
        "best_k": best_k,
        "rule": BEST_K_RULE,
        "best": next(r for r in per_k if r["k"] == best_k),
        "per_k": per_k,
        "artifacts_dir": str(get_settings().artifacts_dir),
        "run_group_id": run_group.id if run_group else None,
        "seconds": time.perf_counter() - start,
    }


def _row(record: dict[str, Any]) -> dict[str, Any]:
    metrics = {m: record.get(m) for m in ("acc", "nmi", "ari")}
    return {
        "k": int(record["k"]),
        "score": float(record["score"]),
        "silhouette": float(record["silhouette"]),
        "stability": float(record.get("stability_ari") or float("nan")),
        "label_metrics": metrics if metrics["nmi"] is not None else None,
    }
