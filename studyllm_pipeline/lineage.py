"""Lineage mirrored as provenance: each materialization is a Group, each asset edge a GroupLink.

A materialization's group is named after its asset and partition, so re-materializing reuses it
(its metadata keeps the newest run id and config). The upstream groups are found from the same
names, so the links reproduce exactly the asset graph Dagster ran. Every sweep asset of one
dataset is a step of the `run` group `sweep[<dataset>]`. The recording itself is one call of the
core's ProvenanceService per materialization; this module only says what Dagster knows.
"""

from collections.abc import Sequence
from typing import Any, Optional

import dagster as dg
from sqlalchemy import Engine

from studyllm_core.services.provenance import ProvenanceService, StepRecord

GROUP_TYPE = "studyllm/group_type"  # asset metadata key: the group type of its materializations
STEP_POSITION = "studyllm/step"  # asset metadata key: its position in a sweep run
CHECK_NAME = "provenance_links"


def group_name(asset_key: dg.AssetKey, partition_key: Optional[str]) -> str:
    """The name of the group of one materialization of `asset_key` (at `partition_key`)."""
    base = asset_key.to_user_string()
    return f"{base}[{partition_key}]" if partition_key else base


def run_group_name(dataset: str) -> str:
    """The `run` group that orders the sweep steps of one dataset."""
    return f"sweep[{dataset}]"


def _partition(context: dg.AssetExecutionContext) -> Optional[str]:
    return context.partition_key if context.has_partition_key else None


def meta_of(context: dg.AssetExecutionContext, key: dg.AssetKey) -> dict[str, Any]:
    """Definition metadata of an asset of the same job."""
    return dict(context.job_def.asset_layer.asset_graph.get(key).metadata or {})


def dataset_of(partition: Optional[str]) -> Optional[str]:
    """The dataset of a partition key (`demo` for both `demo` and `demo|9`)."""
    return str(partition).split("|")[0] if partition else None


def upstream_groups(context: dg.AssetExecutionContext, key: dg.AssetKey, partition: Optional[str] = None) -> dict[str, str]:
    """Group name -> group type of every upstream materialization the `partition` of `key` reads:
    the same partition of a parent partitioned alike, the dataset's of a dataset-partitioned one."""
    graph = context.job_def.asset_layer.asset_graph
    node = graph.get(key)
    partition = partition if partition is not None else _partition(context)
    found: dict[str, str] = {}
    for parent in sorted(node.parent_keys, key=lambda k: k.to_user_string()):
        parent_def = graph.get(parent).partitions_def
        mapped = None if parent_def is None else (partition if parent_def == node.partitions_def else dataset_of(partition))
        found[group_name(parent, mapped)] = str(meta_of(context, parent).get(GROUP_TYPE, "step"))
    return found


def step_record(
    context: dg.AssetExecutionContext,
    key: Optional[dg.AssetKey] = None,
    *,
    partition: Optional[str] = None,
    inputs: Optional[dict[str, str]] = None,
    config: Optional[dict[str, Any]] = None,
    extra_inputs: Sequence[int] = (),
    metadata: Optional[dict[str, Any]] = None,
) -> StepRecord:
    """What Dagster knows about one materialization of `key` (default: the asset of the context) at
    `partition` (default: the run's); `inputs` replaces the upstream groups of the asset graph."""
    key = key or context.asset_key
    meta = meta_of(context, key)
    partition = partition if partition is not None else _partition(context)
    dataset = dataset_of(partition)
    return StepRecord(
        group_type=str(meta.get(GROUP_TYPE, "step")),
        name=group_name(key, partition),
        run=run_group_name(dataset) if dataset else None,
        position=int(meta.get(STEP_POSITION, 0)),
        inputs=inputs if inputs is not None else upstream_groups(context, key, partition),
        extra_inputs=tuple(extra_inputs),
        metadata={
            "dagster_run_id": context.run.run_id,
            "asset_key": key.to_user_string(),
            "partition": partition,
            "config": config or {},
            **(metadata or {}),
        },
        run_metadata={"dataset": dataset} if dataset else {},
    )


def record_materialization(
    context: dg.AssetExecutionContext,
    engine: Engine,
    key: Optional[dg.AssetKey] = None,
    **step: Any,
) -> int:
    """Record one materialization (its group, inputs and place in the sweep run) in one core call."""
    return ProvenanceService(engine).record(step_record(context, key, **step))


def check_links(
    context: dg.AssetExecutionContext,
    engine: Engine,
    group_id: int,
    *,
    extra_inputs: Sequence[str] = (),
    key: Optional[dg.AssetKey] = None,
    inputs: Optional[Sequence[str]] = None,
) -> dg.AssetCheckResult:
    """Do the group's recorded inputs equal this materialization's upstream assets and partitions
    (`inputs` when the step read other partitions than the asset graph's)?"""
    key = key or context.asset_key
    expected = set(inputs if inputs is not None else upstream_groups(context, key)) | set(extra_inputs)
    actual = {g.name for g in ProvenanceService(engine).inputs_of(group_id)}
    missing, extra = sorted(expected - actual), sorted(actual - expected)
    return dg.AssetCheckResult(
        asset_key=key,
        check_name=CHECK_NAME,
        passed=not missing and not extra,
        metadata={
            "group_id": group_id,
            "expected_inputs": dg.MetadataValue.json(sorted(expected)),
            "missing": dg.MetadataValue.json(missing),
            "unexpected": dg.MetadataValue.json(extra),
        },
    )


def provenance_check_spec(asset_name: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name=CHECK_NAME,
        asset=asset_name,
        description="The materialization's GroupLinks (depends_on) match its upstream assets and partitions.",
    )
