"""Jobs: the per-dataset preparation, the per-(dataset, K) sweep steps, and the report."""

import dagster as dg

prepare_job = dg.define_asset_job(
    "prepare_dataset",
    selection=dg.AssetSelection.assets("dataset_snapshot", "embeddings", "pca_projection", "pca_basis"),
    description="Snapshot, embed and project one dataset.",
)

sweep_k_job = dg.define_asset_job(
    "sweep_k",
    selection=dg.AssetSelection.assets("clusters", "cluster_summaries", "cluster_metrics"),
    description="Cluster, summarise and score one dataset at one K (backfill it over K).",
)

report_job = dg.define_asset_job(
    "sweep_report_job",
    selection=dg.AssetSelection.assets("sweep_report"),
    description="Compare every clustered K of one dataset and choose K.",
)
