"""study_comparison: do the models of a reply dataset answer differently, and how (the core's compare_models
over the K its sweep report chose), as tables and a chart in the UI."""

import dagster as dg
import pandas as pd

from studyllm_core.charts import bar_chart
from studyllm_core.services.datasets import DatasetRegistry
from studyllm_pipeline.assets.common import sweep_asset_args, user_errors_as_failures
from studyllm_pipeline.automation import FOLLOW_NEW_RESULTS
from studyllm_pipeline.lineage import check_links, record_materialization
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.resources import StudyllmDatabase
from studyllm_pipeline.tables import as_table, chart, table_asset_metadata

SHARES = ["provider", "model", "cluster", "replies", "share"]


@dg.asset(
    deps=["sweep_report"], automation_condition=FOLLOW_NEW_RESULTS,
    **sweep_asset_args("study_comparison", io="parquet", partitions_def=datasets, postgres=True),
)
@user_errors_as_failures
def study_comparison(context: dg.AssetExecutionContext, database: StudyllmDatabase):
    """Do the models of this dataset of replies answer differently, and how: at the K its sweep report chose, the
    share of each model's replies per cluster, the Jensen-Shannon divergence between every two models, each prompt's
    spread over clusters and a chi-square test of model vs cluster (stored: the shares). A dataset not made of
    replies says so in one line (and stores no rows)."""
    dataset, engine = context.partition_key, database.engine()
    group_id = record_materialization(context, engine)
    kind = DatasetRegistry(engine).kind_of(dataset)
    if kind != "prompt_run":  # the automation follows every report: a file's is answered in one line
        yield dg.Output(pd.DataFrame(columns=SHARES), metadata={"group_id": dg.MetadataValue.text(str(group_id)),
                                                                "comparison": dg.MetadataValue.text(
            f"{dataset} is a {kind or 'unregistered'} dataset, not the replies of a prompt run: no models to compare")})
        yield check_links(context, engine, group_id)
        return
    # Imported here: its scipy.stats costs every run process ~0.7 s at start (the code location is loaded by each
    # run), and only this step uses it (the sweep's scikit-learn metrics import it when they run).
    from studyllm_core.services.study.comparison import compare_models

    comparison = compare_models(engine, database.sweep_results(), dataset)
    shares = comparison.shares
    clusters = sorted(shares["cluster"].unique())
    series = {f"{p}:{m}": [float(v) for v in group.set_index("cluster")["share"].reindex(clusters, fill_value=0.0)]
              for (p, m), group in shares.groupby(["provider", "model"])}
    svg = bar_chart([f"cluster {c}" for c in clusters], series, title="Share of each model's replies per cluster",
                    y_label="share of the model's replies")
    independence = comparison.independence
    yield dg.Output(shares, metadata={
        **table_asset_metadata(shares),
        "group_id": dg.MetadataValue.text(str(group_id)),
        "comparison": dg.MetadataValue.text(comparison.describe()),
        "k": comparison.k,
        "replies": comparison.replies,
        "models": len(comparison.models),
        "max_js_divergence": round(float(comparison.divergence["js_divergence"].max()), 3)
        if len(comparison.divergence) else 0.0,
        "chi_square_p": float(f"{independence.p_value:.3g}") if independence else dg.MetadataValue.text("n/a"),
        "divergence": as_table(comparison.divergence),
        "shares_chart": chart(svg, "share of each model's replies per cluster"),
        "shares": as_table(shares, max_rows=500),
        "prompts": as_table(comparison.prompts, max_rows=50),
    })
    yield check_links(context, engine, group_id)
