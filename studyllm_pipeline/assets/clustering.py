"""clusters, cluster_summaries and cluster_metrics: one partition per (dataset, K)."""

import dagster as dg
import numpy as np
import pandas as pd

from studyllm_core.algorithms import SweepConfig, cluster_restarts, item_costs, projection_from_basis, score_k
from studyllm_core.db.groups import GroupRepository
from studyllm_pipeline.assets.common import API_POOL, markdown_table, sweep_asset_args, user_errors_as_failures
from studyllm_pipeline.partitions import dataset_and_k, dataset_by_k
from studyllm_pipeline.provenance import check_links, record_materialization
from studyllm_pipeline.resources import EmbedderResource, StudyllmDatabase, SummarizerResource


class ClusteringConfig(dg.Config):
    """k-LLMmeans settings for one K (summaries of sampled members replace centroids each round)."""

    n_restarts: int = 5
    metric: str = "cosine"
    llm_rounds: int = 2
    iters_per_round: int = 5
    samples_per_cluster: int = 10
    seed: int = 0
    n_representatives: int = 5

    def sweep_config(self, k: int, pca_dim: int | None = None) -> SweepConfig:
        return SweepConfig(
            k_min=k, k_max=k, n_restarts=self.n_restarts, metric=self.metric, llm_rounds=self.llm_rounds,
            iters_per_round=self.iters_per_round, samples_per_cluster=self.samples_per_cluster, seed=self.seed,
            n_representatives=self.n_representatives, summarize_restarts="best", pca_dim=pca_dim,
        )


@dg.asset(partitions_def=dataset_by_k, pool=API_POOL, **sweep_asset_args("clusters", group_type="step", position=3, io="parquet"))
@user_errors_as_failures
def clusters(
    context: dg.AssetExecutionContext,
    config: ClusteringConfig,
    dataset_snapshot: pd.DataFrame,
    pca_projection: np.ndarray,
    pca_basis: np.ndarray,
    database: StudyllmDatabase,
    embedder: EmbedderResource,
    summarizer: SummarizerResource,
):
    """Restarts of k-LLMmeans at this K; the best one's labels and per-item costs, and every restart's labels."""
    dataset, k = dataset_and_k(context)
    n = len(dataset_snapshot)
    if k > n:
        raise dg.Failure(description=f"K={k} is larger than the {n} texts of dataset {dataset!r}; choose K <= {n}")
    engine = database.engine()
    group_id = record_materialization(context, engine, config=config.model_dump())
    summarize = embed = None
    groups = GroupRepository(engine)
    if config.llm_rounds > 0:
        summarize_fn = summarizer.service(engine).as_summarize_fn(group_name=f"clusters[{context.partition_key}]:rounds")
        embedding = embedder.service(engine)

        def embed(texts: list[str]) -> np.ndarray:
            outcome = embedding.embed(texts, group_id=group_id)
            if outcome.failed:
                raise dg.Failure(description=f"{outcome.failed} cluster summaries could not be embedded; run again")
            return outcome.vectors

        summarize = summarize_fn
    restarts = cluster_restarts(
        pca_projection,
        dataset_snapshot["text"].tolist(),
        k,
        config.sweep_config(k),
        summarize=summarize,
        embed=embed,
        project=projection_from_basis(pca_basis),
    )
    if summarize is not None and summarize_fn.group_id is not None:
        groups.link(group_id, summarize_fn.group_id, "contains")
    chosen = restarts.chosen
    table = pd.DataFrame(
        {
            "row": dataset_snapshot["row"].to_numpy(),
            "label": chosen.labels,
            "cost": item_costs(pca_projection, chosen.labels, chosen.centroids, config.metric),
            "metric": config.metric,  # cluster_metrics scores with the metric the clusters were made with
        }
    )
    for index, run in enumerate(restarts.runs):
        table[f"restart_{index}"] = run.labels
    sizes = np.bincount(chosen.labels, minlength=k)
    metadata = {
        "k": k,
        "objective": float(chosen.objective),
        "restart_objectives": dg.MetadataValue.json([float(r.objective) for r in restarts.runs]),
        "iterations": int(chosen.n_iter),
        "converged": bool(chosen.converged),
        "summarize_calls": int(restarts.n_summarize_calls),
        "sizes": dg.MetadataValue.json(sizes.tolist()),
        "group_id": group_id,
    }
    if chosen.summaries:
        rounds = pd.DataFrame({"cluster": range(k), "size": sizes, "round summary": chosen.summaries})
        metadata["round_summaries"] = markdown_table(rounds)
    yield dg.Output(table, metadata=metadata)
    yield check_links(context, engine, group_id)


@dg.asset(partitions_def=dataset_by_k, pool=API_POOL, **sweep_asset_args("cluster_summaries", group_type="summarization_batch", position=4, io="parquet"))
@user_errors_as_failures
def cluster_summaries(
    context: dg.AssetExecutionContext,
    clusters: pd.DataFrame,
    dataset_snapshot: pd.DataFrame,
    database: StudyllmDatabase,
    summarizer: SummarizerResource,
):
    """One summary per cluster, from its representatives (the members closest to the centroid)."""
    dataset, k = dataset_and_k(context)
    engine = database.engine()
    group_id = record_materialization(context, engine, config={"summarizer": summarizer.spec})
    texts = dataset_snapshot["text"].to_numpy()
    members = [clusters.index[clusters["label"] == c].to_numpy() for c in range(k)]
    reps = [m[np.argsort(clusters["cost"].to_numpy()[m], kind="stable")[:5]] for m in members]
    result = summarizer.service(engine).summarize_batch([texts[r].tolist() for r in reps], group_id=group_id)
    if result.failures:
        first = next(iter(result.failures.values()))
        raise dg.Failure(
            description=f"{len(result.failures)} of {k} clusters could not be summarised ({first}); run again to retry",
        )
    table = pd.DataFrame(
        {
            "cluster": range(k),
            "size": [len(m) for m in members],
            "summary": result.summaries,
            "representatives": [texts[r].tolist() for r in reps],
        }
    )
    md = "\n".join(f"- **{row.cluster}** ({row.size}): {row.summary}" for row in table.itertuples())
    yield dg.Output(table, metadata={"clusters": k, "summaries": dg.MetadataValue.md(md), "group_id": group_id})
    yield check_links(context, engine, group_id)


@dg.asset(partitions_def=dataset_by_k, **sweep_asset_args("cluster_metrics", group_type="metrics", position=5, io="parquet"))
@user_errors_as_failures
def cluster_metrics(
    context: dg.AssetExecutionContext,
    clusters: pd.DataFrame,
    pca_projection: np.ndarray,
    dataset_snapshot: pd.DataFrame,
    database: StudyllmDatabase,
):
    """Quality and stability at this K: silhouette, pairwise ARI of restarts, coverage, dispersion, label metrics."""
    dataset, k = dataset_and_k(context)
    engine = database.engine()
    group_id = record_materialization(context, engine)
    restart_labels = [clusters[c].to_numpy() for c in clusters.columns if c.startswith("restart_")]
    truth = dataset_snapshot["label"].to_numpy() if "label" in dataset_snapshot else None
    settings = ClusteringConfig(metric=str(clusters["metric"].iloc[0])).sweep_config(k)
    scores = score_k(
        pca_projection, clusters["label"].to_numpy(), restart_labels, clusters["cost"].to_numpy(), settings, truth=truth
    )
    row = {"dataset": dataset, **scores.to_row()}
    numeric = {key: float(v) for key, v in row.items() if isinstance(v, (int, float)) and v is not None and key != "k"}
    yield dg.Output(pd.DataFrame([row]), metadata={"k": k, **numeric, "group_id": group_id})
    yield check_links(context, engine, group_id)
