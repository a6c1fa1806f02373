"""sweep: clusters, cluster_summaries and cluster_metrics of one dataset over a K range, in one step.

The step is one call of the core's SweepRecipe (what `studyllm sweep` runs too). Every requested
K ends up done, failed or not run; the three tables keep the done K and cluster_metrics has one
row per requested K with its status. When a K fails, or the run is cancelled, the step still
stores what it finished, then fails naming the K that are missing.
"""

import dagster as dg
import numpy as np
import pandas as pd

from studyllm_core.algorithms import SweepConfig, projection_from_basis
from studyllm_core.services.sweep_recipe import (
    SweepRecipe,
    clusters_table,
    label_codes,
    metrics_table,
    summaries_table,
)
from studyllm_pipeline.assets.common import API_POOL, SWEEP_GROUP, markdown_table, sweep_out, user_errors_as_failures
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.provenance import check_links, provenance_check_spec, record_materialization
from studyllm_pipeline.resources import EmbedderResource, StudyllmDatabase, SummarizerResource

_DEFAULTS = SweepConfig()
OUTPUTS = ("clusters", "cluster_summaries", "cluster_metrics")


class SweepSettings(dg.Config):
    """The K range and the k-LLMmeans settings of one sweep (defaults are studyllm sweep's)."""

    k_min: int = _DEFAULTS.k_min
    k_max: int = _DEFAULTS.k_max
    n_restarts: int = _DEFAULTS.n_restarts
    llm_rounds: int = _DEFAULTS.llm_rounds
    iters_per_round: int = _DEFAULTS.iters_per_round
    samples_per_cluster: int = _DEFAULTS.samples_per_cluster
    n_representatives: int = _DEFAULTS.n_representatives
    summarize_restarts: str = _DEFAULTS.summarize_restarts
    metric: str = _DEFAULTS.metric
    seed: int = _DEFAULTS.seed

    def sweep_config(self) -> SweepConfig:
        return SweepConfig(**self.model_dump())  # pca_dim None: the inputs are projected already


@dg.multi_asset(
    partitions_def=datasets,
    group_name=SWEEP_GROUP,
    pool=API_POOL,
    outs={
        "clusters": sweep_out("step", 3, "Cluster of every text at every done K: row, k, label, cost."),
        "cluster_summaries": sweep_out(
            "summarization_batch", 4,
            "Per done K and cluster: size, summary (the last k-LLMmeans round's), representatives.",
        ),
        "cluster_metrics": sweep_out("metrics", 5, "One row per requested K: status, scores, label metrics."),
    },
    internal_asset_deps={
        "clusters": {dg.AssetKey("dataset_snapshot"), dg.AssetKey("pca_projection"), dg.AssetKey("pca_basis")},
        "cluster_summaries": {dg.AssetKey("clusters")},
        "cluster_metrics": {dg.AssetKey("clusters")},
    },
    check_specs=[provenance_check_spec(name) for name in OUTPUTS],
)
@user_errors_as_failures
def sweep(
    context: dg.AssetExecutionContext,
    config: SweepSettings,
    dataset_snapshot: pd.DataFrame,
    pca_projection: np.ndarray,
    pca_basis: np.ndarray,
    database: StudyllmDatabase,
    embedder: EmbedderResource,
    summarizer: SummarizerResource,
):
    """k-LLMmeans over the K range with restarts, round summaries, scores and representatives."""
    engine = database.engine()
    groups = {name: record_materialization(context, engine, dg.AssetKey(name), config=config.model_dump()) for name in OUTPUTS}
    recipe = SweepRecipe(embedder.service(engine), summarizer.service(engine))
    texts = dataset_snapshot["text"].tolist()
    truth = label_codes(dataset_snapshot["label"].tolist()) if "label" in dataset_snapshot else None
    run = recipe.run(
        pca_projection, texts, config.sweep_config(), labels=truth, project=projection_from_basis(pca_basis),
        groups=(groups["cluster_summaries"], groups["clusters"]), notice=context.log.info,
    )
    rows = dataset_snapshot["row"].to_numpy()
    status = {"requested": f"{config.k_min}..{config.k_max}", "done": len(run.done), "missing": run.problem() or "none"}
    metrics = metrics_table(run)
    yield dg.Output(clusters_table(run, rows), "clusters", metadata={**status, "group_id": groups["clusters"]})
    yield dg.Output(
        summaries_table(run, rows, texts), "cluster_summaries",
        metadata={"summarize_calls": run.n_summarize_calls, "group_id": groups["cluster_summaries"]},
    )
    yield dg.Output(metrics, "cluster_metrics", metadata={
        **status, "k_status": dg.MetadataValue.json(run.statuses()), "per_k": markdown_table(metrics), "group_id": groups["cluster_metrics"],
    })
    for name in OUTPUTS:
        yield check_links(context, engine, groups[name], key=dg.AssetKey(name))
    if isinstance(run.error, BaseException) and not isinstance(run.error, Exception):
        raise run.error  # an interrupt (cancelled run): the finished K are stored above
    if not run.complete:
        raise dg.Failure(description=f"{run.problem()}; the done K are stored, run again for the rest", allow_retries=False)
