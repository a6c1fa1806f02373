"""Partitions: datasets and K are both dynamic. A dataset is added by the sensor, the demo,
`studyllm backfill` or by hand (also the one a prompt_run will fill); a K value is added when a sweep asks for it (the demo,
`studyllm backfill`, the schedule, or by hand in the UI), so the K axis holds only requested K.

The K axis is shared by all datasets: a dataset shows a K as missing when some dataset asked for
that K and this one did not run it.
"""

from collections.abc import Iterable
from typing import Optional

import dagster as dg

from studyllm_core.config import sweep_ks_per_run

datasets = dg.DynamicPartitionsDefinition(name="datasets")
k_values = dg.DynamicPartitionsDefinition(name="k")
dataset_by_k = dg.MultiPartitionsDefinition({"dataset": datasets, "k": k_values})

# The tags of a run over a range of partitions (a single-run backfill); Dagster sets them on the
# runs of a backfill and reads them in the run.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def partition_key(dataset: str, k: int) -> str:
    """The (dataset, K) partition key: `demo|9`."""
    return str(dg.MultiPartitionKey({"dataset": dataset, "k": str(k)}))


def dataset_and_k(key: str) -> tuple[str, int]:
    """The (dataset, K) of a partition key."""
    dataset, _, k = str(key).partition("|")
    return dataset, int(k)


def new_k_values(existing: Iterable[str], ks: Iterable[int]) -> list[str]:
    """The K values of `ks` not on the axis yet, in ascending order (so a range of them stays contiguous)."""
    have = set(existing)
    return [str(k) for k in sorted(set(ks)) if str(k) not in have]


def sweep_backfill_policy() -> dg.BackfillPolicy:
    """A backfill of K partitions runs a whole range in one run (one machine, the dataset loaded once), or,
    with STUDYLLM_SWEEP_KS_PER_RUN=N, N partitions per run (1: a run per (dataset, K), which a run launcher
    such as Kubernetes' starts on any node). Read when the code location loads."""
    per_run = sweep_ks_per_run()
    return dg.BackfillPolicy.single_run() if per_run is None else dg.BackfillPolicy.multi_run(per_run)


def contiguous_ranges(axis: list[str], ks: Iterable[int], per_run: int | None = None) -> list[list[int]]:
    """`ks` split into runs that are contiguous on the K axis (its order is the order K were added), each
    of at most `per_run` K when given: each run is one partition range, so one run of a backfill."""
    position = {k: i for i, k in enumerate(axis)}
    ordered = sorted(set(ks), key=lambda k: position[str(k)])
    ranges: list[list[int]] = []
    for k in ordered:
        if ranges and position[str(k)] == position[str(ranges[-1][-1])] + 1:
            ranges[-1].append(k)
        else:
            ranges.append([k])
    if per_run:
        ranges = [run[i:i + per_run] for run in ranges for i in range(0, len(run), per_run)]
    return ranges


def sweep_run_requests(instance: dg.DagsterInstance, wanted: dict[str, list[int]], run_key: str,
                       run_config: Optional[dict] = None) -> list[dg.RunRequest]:
    """One run request per dataset and contiguous K range of `wanted` ({dataset: [K, ...]}), each a range of
    (dataset, K) partitions run as one (the per-K step's single-run policy); the K missing from the axis are
    added first, in order. `run_key` prefixes each request's key (a schedule tick, a sensor's event)."""
    axis = instance.get_dynamic_partitions(k_values.name)
    added = new_k_values(axis, [k for ks in wanted.values() for k in ks])
    instance.add_dynamic_partitions(k_values.name, added)
    axis = [*axis, *added]
    return [
        dg.RunRequest(run_key=f"{run_key}:{name}:{run[0]}", partition_key=partition_key(name, run[0]),
                      run_config=run_config or {})
        if len(run) == 1  # a single K: a partition's run, as the UI's
        else dg.RunRequest(
            run_key=f"{run_key}:{name}:{run[0]}..{run[-1]}",
            tags={RANGE_START_TAG: partition_key(name, run[0]), RANGE_END_TAG: partition_key(name, run[-1])},
            run_config=run_config or {},
        )
        for name, ks in wanted.items()
        for run in contiguous_ranges(axis, ks, sweep_ks_per_run())
    ]
