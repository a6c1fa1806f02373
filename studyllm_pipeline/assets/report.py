"""sweep_report: every K swept for one dataset side by side, the selection curve, and the chosen K."""

import dagster as dg
import pandas as pd

from studyllm_core.charts import line_chart
from studyllm_core.quality import report_verdict
from studyllm_pipeline.assets.common import sweep_asset_args, user_errors_as_failures
from studyllm_pipeline.automation import FOLLOW_NEW_RESULTS
from studyllm_pipeline.checks import quality_result, quality_spec
from studyllm_pipeline.lineage import check_links, record_materialization
from studyllm_pipeline.partitions import datasets, partition_key
from studyllm_pipeline.tables import as_table, chart, table_asset_metadata
from studyllm_pipeline.resources import StudyllmDatabase

K_CHECK = "requested_k_done"

CHECKS = [quality_spec(
    "sweep_report", K_CHECK, partitions_def=datasets, blocking=False,
    description="At least two K are done (a choice of K needs two to compare) and every K a sweep was asked for "
                "is done. WARN: the result names each failed, refused or missing K; run them again to complete it.",
)]


@dg.asset(deps=["cluster_metrics", "cluster_summaries"], automation_condition=FOLLOW_NEW_RESULTS,
          **sweep_asset_args("sweep_report", io="parquet", partitions_def=datasets, checks=CHECKS))
@user_errors_as_failures
def sweep_report(context: dg.AssetExecutionContext, database: StudyllmDatabase):
    """Every K swept for the dataset with its status and scores; the best done K by the rule stated in the metadata."""
    engine, dataset = database.engine(), context.partition_key
    results = database.sweep_results()
    report = results.report(dataset)
    if report.choice is None:
        raise dg.Failure(description=f"no K of dataset {dataset!r} is done yet ({report.problem() or 'none swept'}): "
                         "sweep K first (studyllm backfill, or materialize its K partitions)", allow_retries=False)
    table = report.table
    done = table[table["status"] == "done"]
    upstream = {(name, partition_key(dataset, int(k))): kind for k in done["k"]
                for name, kind in (("cluster_metrics", "metrics"), ("cluster_summaries", "summarization_batch"))}
    group_id = record_materialization(context, engine, upstream=upstream)
    chosen = report.choice.k
    best = results.summaries(dataset, chosen) if chosen is not None else None
    metadata = {
        **table_asset_metadata(table),
        "best_k": chosen,
        "choice": report.choice.describe(),
        "rule": report.choice.rule,
        "choice_details": dg.MetadataValue.json(report.choice.to_dict()),
        "k_swept": len(table),
        "k_done": len(done),
        "missing": report.problem() or "none",
        "per_k": as_table(table, max_rows=200),
        "selection_curve": _curve(done, chosen),
        "best_k_summaries": as_table(best[["cluster", "size", "summary", "representatives"]]) if best is not None
        else dg.MetadataValue.text(f"no K chosen: {report.choice.describe()}"),
        "group_id": dg.MetadataValue.text(str(group_id)),
    }
    yield dg.Output(table, metadata=metadata)
    yield check_links(context, engine, group_id, within={partition_key(dataset, int(k)) for k in done["k"]})
    verdict = report_verdict([int(k) for k in done["k"]], report.problem(),
                             failed={**report.failed, **report.refused}, missing=report.not_run)
    yield quality_result(verdict, asset="sweep_report", name=K_CHECK, severity=dg.AssetCheckSeverity.WARN)


def _curve(done: pd.DataFrame, best_k: int | None) -> dg.MetadataValue:
    svg = line_chart(
        done["k"].tolist(),
        {c: done[c].tolist() for c in ("subsample_stability", "silhouette", "stability_ari", "nmi") if c in done},
        title="Selection curve over K", x_label="K", marker_x=best_k,
    )
    return chart(svg, "selection curve")
