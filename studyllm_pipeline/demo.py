"""`studyllm demo`: the code location's `prepare_and_sweep` job on the bundled demo corpus, offline.

One run of the real job (the same one the UI, the schedule and `studyllm backfill` run) prepares the
dataset and sweeps exactly K = k_min..k_max; the report printed is that run's. Runs go to the
durable instance under $STUDYLLM_HOME/dagster (Postgres storage), so `studyllm dev` shows them.
"""

import time
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from studyllm_core.config import get_settings
from studyllm_core.db.engine import open_database
from studyllm_core.db.server import DatabaseTarget
from studyllm_core.services.datasets import DEMO, DatasetRegistry
from studyllm_core.services.provenance import ProvenanceService
from studyllm_core.services.sweep_recipe import check_k_range, sweep_report
from studyllm_pipeline.definitions import defs
from studyllm_pipeline.instance import apply_environment, prepare_dagster_home
from studyllm_pipeline.jobs import prepare_and_sweep_job, sweep_run_config
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.provenance import run_group_name

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
    """Prepare the demo dataset and sweep K = k_min..k_max in one run; return the report as a dict.

    `prepared` is `prepare_dagster_home()`'s result when the caller already started the database;
    `started` the `time.perf_counter()` the reported seconds count from.
    """
    start = time.perf_counter() if started is None else started
    low, high = k_min or DEMO_K_RANGE[0], k_max or DEMO_K_RANGE[1]
    _, _, env = prepared or prepare_dagster_home()
    apply_environment(env)
    registry = DatasetRegistry(open_database())
    registry.register_demo()
    check_k_range(low, high, registry.usable_texts(DEMO) or len(registry.load(registry.get(DEMO)).texts), "texts of the demo corpus")
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(datasets.name, [DEMO])
        result = defs.resolve_job_def(prepare_and_sweep_job.name).execute_in_process(
            instance=instance, partition_key=DEMO, run_config={**sweep_run_config(low, high), **QUIET}, tags=TAGS,
            raise_on_error=False,
        )
    report = _report_of(result)
    report.update(k_min=low, k_max=high, seconds=time.perf_counter() - start, run_id=result.run_id)
    return report


def _report_of(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    if not result.success:
        failures = [e.event_specific_data.error.message.strip() for e in result.get_step_failure_events()]
        raise RuntimeError(f"the demo run {result.run_id} failed: {'; '.join(failures) or 'see the UI'}")
    report = sweep_report(result.asset_value("cluster_metrics"))
    snapshot: pd.DataFrame = result.asset_value("dataset_snapshot")
    per_k = [_row(r) for r in report.table.to_dict("records")]
    best_k = report.best_k
    run_group = ProvenanceService(open_database()).groups.lookup("run", run_group_name(DEMO))
    return {
        "dataset": DEMO,
        "texts": len(snapshot),
        "labels": int(snapshot["label"].nunique()),
        "best_k": best_k,
        "rule": report.choice.rule if report.choice else None,
        "missing": report.problem(),
        "best": next(r for r in per_k if r["k"] == best_k),
        "per_k": per_k,
        "artifacts_dir": str(get_settings().artifacts_dir),
        "run_group_id": run_group.id if run_group else None,
    }


def _row(record: dict[str, Any]) -> dict[str, Any]:
    metrics = {m: record.get(m) for m in ("acc", "nmi", "ari")}
    return {
        "k": int(record["k"]),
        "status": record["status"],
        "score": _num(record.get("score")),
        "silhouette": _num(record.get("silhouette")),
        "stability": _num(record.get("stability_ari")),
        "label_metrics": metrics if _num(metrics["nmi"]) is not None else None,
    }


def _num(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)
