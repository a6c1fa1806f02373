"""Partitions: datasets are dynamic (added by the sensor, the demo or by hand); K is static."""

import os

import dagster as dg

K_MIN = 2
K_MAX = int(os.environ.get("STUDYLLM_K_MAX", "30"))

datasets = dg.DynamicPartitionsDefinition(name="datasets")
k_values = dg.StaticPartitionsDefinition([str(k) for k in range(K_MIN, K_MAX + 1)])
dataset_by_k = dg.MultiPartitionsDefinition({"dataset": datasets, "k": k_values})


def dataset_and_k(context: dg.AssetExecutionContext) -> tuple[str, int]:
    """The (dataset, K) of a multi-partitioned materialization."""
    keys = context.partition_key.keys_by_dimension  # type: ignore[attr-defined]
    return keys["dataset"], int(keys["k"])


def sweep_partition_keys(dataset: str, k_min: int, k_max: int) -> list[str]:
    """Multi-partition keys of one dataset for K in [k_min, k_max] (for run requests and backfills)."""
    if not K_MIN <= k_min <= k_max <= K_MAX:
        raise ValueError(f"K must lie in [{K_MIN}, {K_MAX}] with k_min <= k_max; got [{k_min}, {k_max}]")
    return [dg.MultiPartitionKey({"dataset": dataset, "k": str(k)}) for k in range(k_min, k_max + 1)]
