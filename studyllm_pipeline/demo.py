"""`studyllm demo`: the code location's jobs on the bundled demo corpus, offline.

Three runs of the real jobs (the ones the UI, the schedule and a backfill run): `prepare_dataset`
for the `demo` partition, `sweep_k` over the partitions demo|A..demo|B (one run, as a single-run
backfill makes it), and `sweep_report_job`. The report printed covers exactly K = A..B. Runs go to
the durable instance under $STUDYLLM_HOME/dagster (Postgres storage), so `studyllm dev` shows them.
"""

import time
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from studyllm_core.config import get_settings
from studyllm_core.db.engine import POOL_RECYCLE_SECONDS, open_database
from studyllm_core.db.server import DatabaseTarget
from studyllm_core.services.datasets import DEMO, DatasetRegistry
from studyllm_core.services.provenance import ProvenanceService
from studyllm_core.services.sweep.recipe import check_k_range
from studyllm_core.services.sweep.result_store import SweepResults
from studyllm_pipeline.definitions import defs
from studyllm_pipeline.instance import apply_environment, prepare_dagster_home
from studyllm_pipeline.jobs import prepare_job, report_job, sweep_k_job
from studyllm_pipeline.partitions import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    contiguous_ranges,
    datasets,
    k_values,
    new_k_values,
    partition_key,
)
from studyllm_pipeline.lineage import run_group_name

DEMO_K_RANGE = (6, 14)  # the corpus has 10 topics
TAGS = {"studyllm/source": "studyllm demo"}
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}  # the event log keeps every message


def run_demo(
    k_min: int | None = None,
    k_max: int | None = None,
    *,
    prepared: tuple[Path, DatabaseTarget, dict[str, str]] | None = None,
    started: float | None = None,
) -> dict[str, Any]:
    """Prepare the demo dataset, sweep K = k_min..k_max and report; return the report of exactly those K.

    `prepared` is `prepare_dagster_home()`'s result when the caller already started the database;
    `started` the `time.perf_counter()` the reported seconds count from.
    """
    start = time.perf_counter() if started is None else started
    low, high = k_min or DEMO_K_RANGE[0], k_max or DEMO_K_RANGE[1]
    _, _, env = prepared or prepare_dagster_home()
    apply_environment(env)
    engine = open_database()
    registry = DatasetRegistry(engine)
    registry.register_demo()
    n = registry.usable_texts(DEMO) or len(registry.load(registry.get(DEMO)).texts)
    check_k_range(low, high, n, "texts of the demo corpus")  # before anything is added or run
    ks = list(range(low, high + 1))
    with dg.DagsterInstance.get() as instance:
        # One process running three runs: a pooled connection per storage instead of dagster-postgres'
        # default of a new connection for every statement (578 connections, 2.8 s of a demo).
        instance.optimize_for_webserver(statement_timeout=0, pool_recycle=POOL_RECYCLE_SECONDS, max_overflow=5)
        instance.add_dynamic_partitions(datasets.name, [DEMO])
        axis = instance.get_dynamic_partitions(k_values.name)
        added = new_k_values(axis, ks)
        instance.add_dynamic_partitions(k_values.name, added)
        runs = [_run(prepare_job.name, instance, partition_key=DEMO)]
        for part in contiguous_ranges(axis + added, ks):
            tags = {RANGE_START_TAG: partition_key(DEMO, part[0]), RANGE_END_TAG: partition_key(DEMO, part[-1])}
            runs.append(_run(sweep_k_job.name, instance, tags=tags))
        runs.append(_run(report_job.name, instance, partition_key=DEMO))
    report = SweepResults(engine, get_settings().artifacts_dir).report(DEMO, ks)
    snapshot: pd.DataFrame = runs[0].asset_value("dataset_snapshot")
    per_k = [_row(r) for r in report.table.to_dict("records")]
    run_group = ProvenanceService(engine).groups.lookup("run", run_group_name(DEMO))
    return {
        "dataset": DEMO,
        "texts": len(snapshot),
        "labels": int(snapshot["label"].nunique()),
        "k_min": low,
        "k_max": high,
        "best_k": report.best_k,
        "rule": report.choice.rule if report.choice else None,
        "missing": report.problem(),
        "best": next((r for r in per_k if r["k"] == report.best_k), None),
        "per_k": per_k,
        "artifacts_dir": str(get_settings().artifacts_dir),
        "run_group_id": run_group.id if run_group else None,
        "run_ids": [r.run_id for r in runs],
        "seconds": time.perf_counter() - start,
    }


def _run(job: str, instance: dg.DagsterInstance, **options: Any) -> dg.ExecuteInProcessResult:
    """One run of a job of the code location, in this process; RuntimeError naming the failure."""
    tags = {**TAGS, **options.pop("tags", {})}
    result = defs.resolve_job_def(job).execute_in_process(
        instance=instance, run_config=QUIET, raise_on_error=False, tags=tags, **options
    )
    if not result.success:
        failures = [e.event_specific_data.error.message.strip() for e in result.get_step_failure_events()]
        raise RuntimeError(f"the demo's {job} run {result.run_id} failed: {'; '.join(failures) or 'see the UI'}")
    return result


def _row(record: dict[str, Any]) -> dict[str, Any]:
    metrics = {m: record.get(m) for m in ("acc", "nmi", "ari")}
    return {
        "k": int(record["k"]),
        "status": record["status"],
        "reason": record.get("reason") if isinstance(record.get("reason"), str) else None,
        "score": _num(record.get("score")),
        "silhouette": _num(record.get("silhouette")),
        "stability": _num(record.get("stability_ari")),
        "label_metrics": metrics if _num(metrics["nmi"]) is not None else None,
    }


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)
