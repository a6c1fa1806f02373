"""Lineage mirrored as provenance: what Dagster knows about a materialization, handed to the core.

Each materialization is recorded by one `ProvenanceService.record_materialization` call (the K of a
ranged run by one `record_materializations` call, one transaction) from the facts Dagster has: the asset key, the partition, the run id, the asset's group type and position
(`STEPS`), and the upstream assets and partitions it read. The core names the groups
(`<asset>[<partition>]`, the run group `sweep[<dataset>]`), so re-materializing reuses a group and the
links reproduce exactly the asset graph Dagster ran; each materialization also adds its own record
(run id, config, code and library versions, the records of its inputs), the run history. The
`provenance_links` check does not reuse the writer's partition rule: it asks Dagster which upstream
partitions this materialization reads (its partition mappings) and compares them with the inputs
stored in this run's record of it.
"""

from collections.abc import Collection, Mapping, Sequence
from typing import Any, Optional

import dagster as dg
from sqlalchemy import Engine

from studyllm_core.services.provenance import Materialization, ProvenanceService, dataset_of, materialization_group
from studyllm_pipeline.checks import check_spec

CHECK_NAME = "provenance_links"

Upstream = Mapping[tuple[str, Optional[str]], str]  # (asset, partition) read -> its group type

# Per asset: the group type of its materializations and its position in a sweep run. Kept here, not
# in the assets' definition metadata, so the UI's metadata tables show only what users read.
STEPS: dict[str, tuple[str, int]] = {
    "dataset_snapshot": ("dataset", 0),
    "embeddings": ("embedding_batch", 1),
    "pca_projection": ("step", 2),
    "pca_basis": ("step", 2),
    "clusters": ("step", 3),
    "cluster_summaries": ("summarization_batch", 4),
    "cluster_metrics": ("metrics", 5),
    "sweep_report": ("metrics", 6),
    "study_comparison": ("metrics", 7),
    "prompt_run": ("prompt_run", 0),
}

ANALYTICS = {"provider_comparison", "calls_over_time", "failure_rates", "usage_summary", "recent_calls"}


def group_type_of(key: dg.AssetKey) -> str:
    """The group type of `key`'s materializations (`metrics` for the analytics, `step` otherwise)."""
    return STEPS.get(key.to_user_string(), ("metrics" if key.to_user_string() in ANALYTICS else "step", 0))[0]


def group_name(asset_key: dg.AssetKey, partition_key: Optional[str]) -> str:
    """The name of the group of one materialization of `asset_key` (at `partition_key`)."""
    return materialization_group(asset_key.to_user_string(), partition_key)


def _partition(context: dg.AssetExecutionContext) -> Optional[str]:
    return context.partition_key if context.has_partition_key else None


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
        found[(parent.to_user_string(), mapped)] = group_type_of(parent)
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
    versions: Optional[dict[str, str]] = None,
) -> Materialization:
    """What Dagster knows about one materialization of `key` (default: the asset of the context) at
    `partition` (default: the run's); `upstream` replaces the upstream partitions of the asset graph."""
    key = key or context.asset_key
    partition = partition if partition is not None else _partition(context)
    return Materialization(
        asset=key.to_user_string(),
        partition=partition,
        run_id=context.run.run_id,
        group_type=group_type_of(key),
        position=STEPS.get(key.to_user_string(), ("", 0))[1],
        upstream=dict(upstream) if upstream is not None else upstream_of(context, key, partition),
        extra_inputs=tuple(extra_inputs),
        config=config or {},
        metadata=metadata or {},
        code_version=context.assets_def.code_versions_by_key.get(key),
        versions=versions or {},
    )


def record_materialization(
    context: dg.AssetExecutionContext,
    engine: Engine,
    key: Optional[dg.AssetKey] = None,
    **facts: Any,
) -> int:
    """Record one materialization (its group, inputs and place in the sweep run) in one core call."""
    return ProvenanceService(engine).record_materialization(materialization(context, key, **facts))


def record_materializations(
    context: dg.AssetExecutionContext,
    engine: Engine,
    made: Sequence[tuple[dg.AssetKey, str]],
    **facts: Any,
) -> list[int]:
    """Record the materializations of a step over many partitions ((asset, partition) each, the same
    `facts`) in one transaction (ProvenanceService.record_materializations); their group ids, in order."""
    return ProvenanceService(engine).record_materializations(
        [materialization(context, key, partition=partition, **facts) for key, partition in made])


def expected_inputs(
    context: dg.AssetExecutionContext, key: dg.AssetKey, *, within: Optional[Collection[str]] = None,
) -> set[str]:
    """The upstream groups of this materialization of `key` as Dagster sees them: each parent in the
    asset graph at the partitions Dagster's partition mappings give for this run (`within`: only
    those upstream partitions, e.g. the K a report compares)."""
    expected: set[str] = set()
    if within is not None and not within:
        return expected  # no upstream partition is read (a file dataset's snapshot and prompt_run)
    for parent in context.assets_def.asset_deps[key]:
        partitions = context.asset_partition_keys_for_input(parent.to_python_identifier())
        expected.update(group_name(parent, p) for p in partitions if within is None or p in within)
    return expected


def check_links(
    context: dg.AssetExecutionContext,
    engine: Engine,
    group_id: int,
    *,
    extra_inputs: Sequence[str] = (),
    key: Optional[dg.AssetKey] = None,
    within: Optional[Collection[str]] = None,
) -> dg.AssetCheckResult:
    """Do the inputs stored in this run's record of the group equal the upstream partitions Dagster maps
    this materialization to (plus `extra_inputs`, groups outside the asset graph such as a dataset source)?"""
    key = key or context.asset_key
    expected = expected_inputs(context, key, within=within) | set(extra_inputs)
    records = ProvenanceService(engine).records_of(group_id, run_id=context.run.run_id)
    actual = {i["group"] for i in records[0].inputs} if records else None
    return dg.AssetCheckResult(asset_key=key, check_name=CHECK_NAME,
                               **_links_verdict(group_id, expected, actual, context.run.run_id))


def _links_verdict(group_id: int, expected: set[str], actual: Optional[set[str]], run_id: str) -> dict[str, Any]:
    """passed, description and metadata of a provenance_links result: the inputs stored in this run's
    record (None: no record) against the expected ones."""
    records = actual is not None
    actual = actual or set()
    missing, extra = sorted(expected - actual), sorted(actual - expected)
    problems = ([] if records else [f"no record of this materialization for run {run_id}"]) + (
        [f"missing links from {', '.join(missing)}"] if missing else []) + (
        [f"unexpected links from {', '.join(extra)}"] if extra else [])
    return {
        "passed": not problems,
        "description": "; ".join(problems) or f"{len(expected)} upstream links, as in the asset graph",
        "metadata": {
            "group_id": dg.MetadataValue.text(str(group_id)),
            "expected_inputs": dg.MetadataValue.json(sorted(expected)),
            "missing": dg.MetadataValue.json(missing),
            "unexpected": dg.MetadataValue.json(extra),
        },
    }


def partition_inputs(context: dg.AssetExecutionContext, key: dg.AssetKey, partition: str,
                     mapped: Optional[dict[dg.AssetKey, Sequence[str]]] = None) -> set[str]:
    """The upstream groups of one (dataset, K) `partition` of `key` made by a step over one or several
    partitions: a parent made by the same step, at that partition (Dagster maps like-partitioned assets
    one to one); a parent read as an input, at the partitions Dagster maps the run to, of that dataset.
    `mapped` keeps each input's mapped partitions across calls of one step (Dagster takes ~40 ms to map them)."""
    partitions_def = context.assets_def.partitions_def
    dimensions = (partitions_def.get_partition_key_from_str(partition).keys_by_dimension
                  if isinstance(partitions_def, dg.MultiPartitionsDefinition) else {})
    expected: set[str] = set()
    mapped = {} if mapped is None else mapped
    for parent in context.assets_def.asset_deps[key]:
        if parent in context.assets_def.keys:
            expected.add(group_name(parent, partition))
            continue
        if parent not in mapped:
            mapped[parent] = context.asset_partition_keys_for_input(parent.to_python_identifier())
        for upstream in mapped[parent]:
            if upstream in dimensions.values() or not dimensions:
                expected.add(group_name(parent, upstream))
    return expected


def check_partition_links(
    context: dg.AssetExecutionContext, engine: Engine, made: Sequence[tuple[str, str, int]],
) -> list[Any]:
    """provenance_links of every (asset, partition, group id) a step made, in one query.

    A step over a range of partitions (a single-run backfill) gets from Dagster no partition for an
    AssetCheckResult, so each partition's result is an AssetCheckEvaluation naming its partition, and
    one AssetCheckResult per asset (the check's output) sums the step up, naming the failed partitions.
    A step of one partition gives its AssetCheckResult only (Dagster stores it for that partition).
    """
    stored = ProvenanceService(engine).run_inputs_of([group for *_, group in made], context.run.run_id)
    per_asset: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    mapped: dict[dg.AssetKey, Sequence[str]] = {}
    for asset, partition, group in made:
        verdict = _links_verdict(group, partition_inputs(context, dg.AssetKey(asset), partition, mapped), stored[group],
                                 context.run.run_id)
        per_asset.setdefault(asset, []).append((partition, verdict))
    events: list[Any] = []
    for asset, verdicts in per_asset.items():
        if context.has_partition_key:
            events.append(dg.AssetCheckResult(asset_key=asset, check_name=CHECK_NAME, **verdicts[0][1]))
            continue
        events += [dg.AssetCheckEvaluation(asset_key=dg.AssetKey(asset), check_name=CHECK_NAME, partition=partition, blocking=False,
                                           **{**verdict, "metadata": {**verdict["metadata"], "partition": partition}})
                   for partition, verdict in verdicts]
        failed = [partition for partition, verdict in verdicts if not verdict["passed"]]
        events.append(dg.AssetCheckResult(
            asset_key=asset, check_name=CHECK_NAME, passed=not failed,
            description=(f"{len(failed)} of {len(verdicts)} partitions with wrong links: {', '.join(failed)}" if failed
                         else f"the links of {len(verdicts)} partitions, as in the asset graph"),
            metadata={"partitions": dg.MetadataValue.json([p for p, _ in verdicts]), "failed": dg.MetadataValue.json(failed)},
        ))
    return events


def provenance_check_spec(asset_name: str, partitions_def: Optional[dg.PartitionsDefinition] = None) -> dg.AssetCheckSpec:
    return check_spec(
        asset_name, CHECK_NAME, partitions_def=partitions_def,
        description="The inputs stored in this run's provenance record of this materialization are exactly "
                    "the upstream assets and partitions Dagster's asset graph says it reads.",
    )
