"""Jobs: prepare a dataset, sweep K over (dataset, K) partitions, report a dataset."""

import dagster as dg

PREPARE = ["dataset_snapshot", "embeddings", "pca_projection", "pca_basis"]
PER_K = ["clusters", "cluster_summaries", "cluster_metrics"]

prepare_job = dg.define_asset_job(
    "prepare_dataset",
    selection=dg.AssetSelection.assets(*PREPARE),
    description="Snapshot, embed and project one dataset.",
)

sweep_k_job = dg.define_asset_job(
    "sweep_k",
    selection=dg.AssetSelection.assets(*PER_K),
    description="Cluster, summarise and score (dataset, K) partitions of a prepared dataset; a range of K is one run.",
)

report_job = dg.define_asset_job(
    "sweep_report_job",
    selection=dg.AssetSelection.assets("sweep_report"),
    description="Compare every K swept for one dataset and choose K.",
)
