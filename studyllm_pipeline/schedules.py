"""A schedule that re-runs the K sweep of every dataset (stopped by default: it may spend money)."""

import os

import dagster as dg

from studyllm_pipeline.jobs import sweep_k_job
from studyllm_pipeline.partitions import K_MAX, K_MIN, datasets, sweep_partition_keys


def sweep_range() -> tuple[int, int]:
    """STUDYLLM_SWEEP_K_MIN/MAX, within the K partitions."""
    low = int(os.environ.get("STUDYLLM_SWEEP_K_MIN", K_MIN))
    high = int(os.environ.get("STUDYLLM_SWEEP_K_MAX", min(K_MAX, 12)))
    return low, high


@dg.schedule(job=sweep_k_job, cron_schedule="0 3 * * *", default_status=dg.DefaultScheduleStatus.STOPPED)
def nightly_sweep(context: dg.ScheduleEvaluationContext):
    """Every night at 03:00: one run per (dataset, K); the report follows on its own (its automation condition)."""
    names = context.instance.get_dynamic_partitions(datasets.name)
    if not names:
        return dg.SkipReason("no datasets yet: run `studyllm demo` or drop a file in the watched folder")
    low, high = sweep_range()
    stamp = context.scheduled_execution_time.strftime("%Y%m%d")
    return [
        dg.RunRequest(run_key=f"{stamp}:{key}", partition_key=key, tags={"studyllm/dataset": name})
        for name in names
        for key in sweep_partition_keys(name, low, high)
    ]
