"""Lineage mirrored as provenance: what Dagster knows about a materialization, handed to the core.

Each materialization is recorded by one `ProvenanceService.record_materialization` call from the
facts Dagster has: the asset key, the partition, the run id, the asset's group type and position
(definition metadata), and the upstream assets and partitions it read. The core names the groups
(`<asset>[<partition>]`, the run group `sweep[<dataset>]`), so re-materializing reuses a group and the
links reproduce exactly the asset graph Dagster ran.
"""

from collections.abc import Mapping, Sequence
from typing import Any, Optional

import dagster as dg
from sqlalchemy import Engine

from studyllm_core.services.provenance import Materialization, ProvenanceService, dataset_of, materialization_group

GROUP_TYPE = "studyllm/group_type"  # asset metadata key: the group type of its materializations
STEP_POSITION = "studyllm/step"  # asset metadata key: its position in a sweep run
CHECK_NAME = "provenance_links"

Upstream = Mapping[tuple[str, Optional[str]], str]  # (asset, partition) read -> its group type


def group_name(asset_key: dg.AssetKey, partition_key: Optional[str]) -> str:
    """The name of the group of one materialization of `asset_key` (at `partition_key`)."""
    return materialization_group(asset_key.to_user_string(), partition_key)


def _partition(context: dg.AssetExecutionContext) -> Optional[str]:
    return context.partition_key if context.has_partition_key else None


def meta_of(context: dg.AssetExecutionContext, key: dg.AssetKey) -> dict[str, Any]:
    """Definition metadata of an asset of the same job."""
    return dict(context.job_def.asset_layer.asset_graph.get(key).metadata or {})


def upstream_of(context: dg.AssetExecutionContext, key: dg.AssetKey, partition: Optional[str] = None) -> dict[tuple[str, Optional[str]], str]:
    """(asset, partition) -> group type of every upstream materialization the `partition` of `key` reads:
    the same partition of a parent partitioned alike, the dataset's of a dataset-partitioned one."""
    graph = context.job_def.asset_layer.asset_graph
    node = graph.get(key)
    partition = partition if partition is not None else _partition(context)
    found: dict[tuple[str, Optional[str]], str] = {}
    for parent in sorted(node.parent_keys, key=lambda k: k.to_user_string()):
        parent_def = graph.get(parent).partitions_def
        mapped = None if parent_def is None else (partition if parent_def == node.partitions_def else dataset_of(partition))
        found[(parent.to_user_string(), mapped)] = str(meta_of(context, parent).get(GROUP_TYPE, "step"))
    return found


def materialization(
    context: dg.AssetExecutionContext,
    key: Optional[dg.AssetKey] = None,
    *,
    partition: Optional[str] = None,
    upstream: Optional[Upstream] = None,
    config: Optional[dict[str, Any]] = None,
    extra_inputs: Sequence[int] = (),
    metadata: Optional[dict[str, Any]] = None,
) -> Materialization:
    """What Dagster knows about one materialization of `key` (default: the asset of the context) at
    `partition` (default: the run's); `upstream` replaces the upstream partitions of the asset graph."""
    key = key or context.asset_key
    meta = meta_of(context, key)
    partition = partition if partition is not None else _partition(context)
    return Materialization(
        asset=key.to_user_string(),
        partition=partition,
        run_id=context.run.run_id,
        group_type=str(meta.get(GROUP_TYPE, "step")),
        position=int(meta.get(STEP_POSITION, 0)),
        upstream=dict(upstream) if upstream is not None else upstream_of(context, key, partition),
        extra_inputs=tuple(extra_inputs),
        config=config or {},
        metadata=metadata or {},
    )


def record_materialization(
    context: dg.AssetExecutionContext,
    engine: Engine,
    key: Optional[dg.AssetKey] = None,
    **facts: Any,
) -> int:
    """Record one materialization (its group, inputs and place in the sweep run) in one core call."""
    return ProvenanceService(engine).record_materialization(materialization(context, key, **facts))


def check_links(
    context: dg.AssetExecutionContext,
    engine: Engine,
    group_id: int,
    *,
    extra_inputs: Sequence[str] = (),
    key: Optional[dg.AssetKey] = None,
    upstream: Optional[Upstream] = None,
) -> dg.AssetCheckResult:
    """Do the group's recorded inputs equal this materialization's upstream assets and partitions
    (`upstream` when the step read other partitions than the asset graph's)?"""
    key = key or context.asset_key
    read = upstream if upstream is not None else upstream_of(context, key)
    expected = {materialization_group(asset, partition) for asset, partition in read} | set(extra_inputs)
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
