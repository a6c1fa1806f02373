"""A schedule that re-runs the K sweep of every dataset (stopped by default: it may spend money)."""

import os

import dagster as dg

from studyllm_core.services.datasets import DatasetRegistry
from studyllm_pipeline.jobs import prepare_and_sweep_job, sweep_run_config
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.resources import StudyllmDatabase


def sweep_range() -> tuple[int, int]:
    """STUDYLLM_SWEEP_K_MIN/MAX (default 2..12)."""
    return int(os.environ.get("STUDYLLM_SWEEP_K_MIN", 2)), int(os.environ.get("STUDYLLM_SWEEP_K_MAX", 12))


@dg.schedule(job=prepare_and_sweep_job, cron_schedule="0 3 * * *", default_status=dg.DefaultScheduleStatus.STOPPED)
def nightly_sweep(context: dg.ScheduleEvaluationContext, database: StudyllmDatabase):
    """Every night at 03:00: one run per dataset (prepare, then sweep K); K beyond a dataset's texts is left out."""
    names = context.instance.get_dynamic_partitions(datasets.name)
    if not names:
        return dg.SkipReason("no datasets yet: run `studyllm demo` or drop a file in the watched folder")
    low, high = sweep_range()
    registry = DatasetRegistry(database.engine())
    stamp = context.scheduled_execution_time.strftime("%Y%m%d")
    requests = []
    for name in names:
        n = registry.usable_texts(name)
        top = high if n is None else min(high, n)
        if top >= low:
            requests.append(dg.RunRequest(run_key=f"{stamp}:{name}", partition_key=name, run_config=sweep_run_config(low, top)))
    return requests or dg.SkipReason(f"no dataset has more than {low} texts")
