"""Jobs over one dataset partition: prepare it, sweep K (the range is run config), or both in one run."""

import dagster as dg

PREPARE = ["dataset_snapshot", "embeddings", "pca_projection", "pca_basis"]
SWEEP = ["clusters", "cluster_summaries", "cluster_metrics", "sweep_report"]

prepare_job = dg.define_asset_job(
    "prepare_dataset",
    selection=dg.AssetSelection.assets(*PREPARE),
    description="Snapshot, embed and project one dataset.",
)

sweep_job = dg.define_asset_job(
    "sweep_dataset",
    selection=dg.AssetSelection.assets(*SWEEP),
    description="Cluster a prepared dataset for every K of a range (ops: sweep: config: k_min, k_max), score each K "
    "and choose one.",
)

prepare_and_sweep_job = dg.define_asset_job(
    "prepare_and_sweep",
    selection=dg.AssetSelection.assets(*PREPARE, *SWEEP),
    description="Prepare a dataset and sweep K in one run (what `studyllm demo` runs).",
)


report_job = dg.define_asset_job(
    "sweep_report_job",
    selection=dg.AssetSelection.assets("sweep_report"),
    description="Report the sweep results stored for one dataset (after a sweep that stopped part-way).",
)


def sweep_run_config(k_min: int, k_max: int, **settings: object) -> dict:
    """The run config of a sweep over [k_min, k_max] (other settings: SweepSettings' fields)."""
    return {"ops": {"sweep": {"config": {"k_min": k_min, "k_max": k_max, **settings}}}}
