"""Partitions: datasets and K are both dynamic. A dataset is added by the sensor, the demo,
`studyllm backfill` or by hand (also the one a prompt_run will fill); a K value is added when a sweep asks for it (the demo,
`studyllm backfill`, the schedule, or by hand in the UI), so the K axis holds only requested K.

The K axis is shared by all datasets: a dataset shows a K as missing when some dataset asked for
that K and this one did not run it.
"""

from collections.abc import Iterable

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
