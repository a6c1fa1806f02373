"""A schedule that re-runs the K sweep of every prepared dataset (stopped by default: it may spend money)."""

import dagster as dg

from studyllm_core.config import sweep_k_range
from studyllm_core.services.datasets import DatasetRegistry
from studyllm_pipeline.jobs import sweep_k_job
from studyllm_pipeline.partitions import datasets, sweep_run_requests
from studyllm_pipeline.resources import StudyllmDatabase


def sweep_range() -> tuple[int, int]:
    """STUDYLLM_SWEEP_K_MIN/MAX (default 2..12)."""
    return sweep_k_range()


@dg.schedule(
    job=sweep_k_job, cron_schedule="0 3 * * *", default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Every night at 03:00: one run per prepared dataset over K = STUDYLLM_SWEEP_K_MIN.._MAX (default "
                "2..12, cut to the dataset's texts); the report follows on its own. Stopped by default because it may "
                "spend money: with an LLM summariser or a paid embedder every K calls the provider's API. Turn it on "
                "here when that is what you want.",
)
def nightly_sweep(context: dg.ScheduleEvaluationContext, database: StudyllmDatabase):
    """Every night at 03:00: K from STUDYLLM_SWEEP_K_MIN to _MAX (cut to each dataset's usable texts)
    for every prepared dataset, one run per dataset (or per STUDYLLM_SWEEP_KS_PER_RUN K); the report
    follows on its own."""
    names = context.instance.get_dynamic_partitions(datasets.name)
    registry = DatasetRegistry(database.engine())
    low, high = sweep_range()
    wanted = {name: list(range(low, min(high, n) + 1)) for name in names if (n := registry.usable_texts(name))}
    wanted = {name: ks for name, ks in wanted.items() if ks}
    if not wanted:
        return dg.SkipReason("no prepared dataset with enough texts: run `studyllm demo` or drop a file in the watched folder")
    stamp = context.scheduled_execution_time.strftime("%Y%m%d")
    return sweep_run_requests(context.instance, wanted, stamp)
