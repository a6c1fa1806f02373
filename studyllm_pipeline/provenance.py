"""Lineage mirrored as provenance: each materialization is a Group, each asset edge a GroupLink.

A materialization's group is named after its asset and partition, so re-materializing reuses it
(its metadata keeps the newest run id, config and history). The upstream groups are found from
the same names, so the links reproduce exactly the asset graph Dagster ran.
"""

from collections.abc import Sequence
from typing import Any, Optional

import dagster as dg
from sqlalchemy import Engine

from studyllm_core.db.groups import GroupRepository
from studyllm_core.services.provenance import ProvenanceService

GROUP_TYPE = "studyllm/group_type"  # asset metadata key: the group type of its materializations
STEP_POSITION = "studyllm/step"  # asset metadata key: its position in a sweep run
CHECK_NAME = "provenance_links"


def group_name(asset_key: dg.AssetKey, partition_key: Optional[str]) -> str:
    """The name of the group of one materialization of `asset_key` (at `partition_key`)."""
    base = asset_key.to_user_string()
    return f"{base}[{partition_key}]" if partition_key else base


def dataset_of(partition_key: Optional[str]) -> Optional[str]:
    """The dataset a partition belongs to ('demo' for both 'demo' and 'demo|7' style keys)."""
    if not partition_key:
        return None
    return str(partition_key).split("|")[0]


def _partition(context: dg.AssetExecutionContext) -> Optional[str]:
    return context.partition_key if context.has_partition_key else None


def upstream_groups(
    context: dg.AssetExecutionContext, loaded: Optional[dict[str, Sequence[str]]] = None
) -> dict[str, tuple[dg.AssetKey, Optional[str]]]:
    """Group name -> (asset key, partition) of every upstream materialization this run reads.

    `loaded` gives, per input name, the partitions actually read when some may be missing
    (inputs with allow_missing_partitions).
    """
    found: dict[str, tuple[dg.AssetKey, Optional[str]]] = {}
    graph = context.job_def.asset_layer.asset_graph
    for input_name, key in context.assets_def.keys_by_input_name.items():
        partitioned = graph.get(key).partitions_def is not None
        if loaded is not None and input_name in loaded:
            keys = list(loaded[input_name])
        else:
            keys = context.asset_partition_keys_for_input(input_name) if partitioned else [None]
        for partition in keys:
            found[group_name(key, partition)] = (key, partition)
    return found


def record_materialization(
    context: dg.AssetExecutionContext,
    engine: Engine,
    *,
    config: Optional[dict[str, Any]] = None,
    extra_inputs: Sequence[int] = (),
    key: Optional[dg.AssetKey] = None,
    loaded: Optional[dict[str, Sequence[str]]] = None,
) -> int:
    """Create or reuse this materialization's group, link its inputs, and place it in its sweep run.

    `extra_inputs` are groups outside the asset graph the step read (a registered dataset source);
    `key` picks the output of a multi-asset.
    """
    key = key or context.asset_key
    meta = meta_of(context, key)
    group_type = str(meta.get(GROUP_TYPE, "step"))
    partition = _partition(context)
    prov = ProvenanceService(engine)
    groups = GroupRepository(engine)
    names_by_type: dict[str, list[str]] = {}
    for name, (up_key, _) in upstream_groups(context, loaded).items():
        names_by_type.setdefault(str(meta_of(context, up_key).get(GROUP_TYPE, "step")), []).append(name)
    ids: dict[str, int] = {}
    for up_type, names in names_by_type.items():  # one statement per group type, not one per input
        ids.update(groups.ensure_groups(up_type, names))
    inputs = [ids[name] for names in names_by_type.values() for name in names] + list(extra_inputs)
    dataset = dataset_of(partition)
    run_group = groups.ensure_group("run", f"sweep[{dataset}]", metadata={"dataset": dataset}) if dataset else None
    metadata = {
        "dagster_run_id": context.run.run_id,
        "asset_key": key.to_user_string(),
        "partition": partition,
        "config": config or {},
    }
    return prov.record_step(
        group_type,
        group_name(key, partition),
        inputs=inputs,
        run_id=run_group,
        position=int(meta.get(STEP_POSITION, 0)),
        metadata=metadata,
    )


def meta_of(context: dg.AssetExecutionContext, key: dg.AssetKey) -> dict[str, Any]:
    """Definition metadata of another asset of the same job."""
    return dict(context.job_def.asset_layer.asset_graph.get(key).metadata or {})


def check_links(
    context: dg.AssetExecutionContext,
    engine: Engine,
    group_id: int,
    *,
    extra_inputs: Sequence[str] = (),
    key: Optional[dg.AssetKey] = None,
    loaded: Optional[dict[str, Sequence[str]]] = None,
) -> dg.AssetCheckResult:
    """Do the group's recorded inputs equal this materialization's upstream assets and partitions?"""
    expected = set(upstream_groups(context, loaded)) | set(extra_inputs)
    actual = {g.name for g in ProvenanceService(engine).inputs_of(group_id)}
    missing, extra = sorted(expected - actual), sorted(actual - expected)
    return dg.AssetCheckResult(
        asset_key=key or context.asset_key,
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
