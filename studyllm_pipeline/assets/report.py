"""sweep_report: every K of one dataset side by side, the selection curve, and the chosen K."""

import warnings

import dagster as dg
import pandas as pd

from studyllm_core.algorithms import BEST_K_RULE, choose_best_k
from studyllm_core.charts import line_chart_svg
from studyllm_pipeline.assets.common import markdown_table, sweep_asset_args, user_errors_as_failures
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.provenance import check_links, record_materialization
from studyllm_pipeline.resources import StudyllmDatabase

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # stable in practice; beta only in name
    _BY_DATASET = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="dataset")


REPORT_CONDITION = (
    dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("new K results")


@dg.asset(
    partitions_def=datasets,
    ins={
        "cluster_metrics": dg.AssetIn(partition_mapping=_BY_DATASET, metadata={"allow_missing_partitions": True}),
        "cluster_summaries": dg.AssetIn(partition_mapping=_BY_DATASET, metadata={"allow_missing_partitions": True}),
    },
    # Reading stored results costs nothing, so the report follows its inputs on its own. Not plain
    # `eager()`: most K partitions are never clustered, and eager waits until no dependency is missing.
    automation_condition=REPORT_CONDITION,
    **sweep_asset_args("sweep_report", group_type="metrics", position=6, io="parquet"),
)
@user_errors_as_failures
def sweep_report(
    context: dg.AssetExecutionContext,
    cluster_metrics: dict[str, pd.DataFrame],
    cluster_summaries: dict[str, pd.DataFrame],
    database: StudyllmDatabase,
):
    """All K of the dataset with their scores; best K by the rule stated in the metadata."""
    if not cluster_metrics:
        raise dg.Failure(description="no K has been clustered for this dataset yet: materialize cluster_metrics first")
    engine = database.engine()
    loaded = {"cluster_metrics": list(cluster_metrics), "cluster_summaries": list(cluster_summaries)}
    group_id = record_materialization(context, engine, loaded=loaded)
    table = pd.concat(cluster_metrics.values(), ignore_index=True).sort_values("k").reset_index(drop=True)
    best_k = choose_best_k(dict(zip(table["k"], table["score"])))
    table["best"] = table["k"] == best_k
    best_key = next((key for key in cluster_summaries if key.endswith(f"|{best_k}") or key.startswith(f"{best_k}|")), None)
    metadata = {
        "best_k": best_k,
        "k_values": len(table),
        "rule": BEST_K_RULE,
        "per_k": markdown_table(table.drop(columns=["dataset"]).round(4)),
        "selection_curve": dg.MetadataValue.md(
            "![selection curve](data:image/svg+xml;base64,"
            + line_chart_svg(
                table["k"].tolist(),
                {c: table[c].tolist() for c in ("score", "silhouette", "stability_ari", "nmi") if c in table},
                title="Selection curve over K",
                x_label="K",
                marker_x=best_k,
                as_base64=True,
            )
            + ")"
        ),
        "group_id": group_id,
    }
    if best_key is not None:
        summaries = cluster_summaries[best_key]
        metadata["best_k_summaries"] = dg.MetadataValue.md(
            "\n".join(f"- **{r.cluster}** ({r.size}): {r.summary}" for r in summaries.itertuples())
        )
    yield dg.Output(table, metadata=metadata)
    yield check_links(context, engine, group_id, loaded=loaded)
