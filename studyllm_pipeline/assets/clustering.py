"""clusters, cluster_summaries and cluster_metrics: one partition per (dataset, K), made by one step.

The step (op `sweep_k`) has a single-run backfill policy (unless STUDYLLM_SWEEP_KS_PER_RUN splits a
range into runs of that many K, to spread them over machines): a backfill of K = 9..16 of a dataset is one
run that loads the dataset once and calls the core's SweepRecipe for those K (what `studyllm sweep`
runs). Each K's three tables are stored by the core's SweepResults as soon as the K is done, and the
step reports each done K as a materialization of its partition. A K that fails stops the step, which
then fails the run: the K done before stay materialized, the others are failed partitions, and
cluster_metrics' records name them. After the K loop the core's second pass re-optimises the K near the
first choice (as `studyllm sweep` does); a K it improves is stored and materialized again. A K larger than the dataset's texts is refused, reported and
left unmaterialized (it never turns the assets red); the others run. The step holds the sweep
locks of its (dataset, K) while it sweeps them (SweepResults.hold): a run whose K overlap, ranged
or not, waits with a line saying for which run; runs of other K or other datasets go on.
"""

from typing import Optional

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from studyllm_core.columns import round_value
from studyllm_core.quality import Verdict, clusters_verdict, combine, summaries_verdict
from studyllm_core.services.sweep.methods import DEFAULT_METHOD, DEFAULT_RANK, method_settings
from studyllm_core.services.sweep.projection import projector
from studyllm_core.services.sweep.recipe import KResult, SweepConfig, SweepRecipe, label_codes
from studyllm_core.services.sweep.result_store import TABLES
from studyllm_pipeline.assets.common import API_POOL, PARQUET, SPENDS_MONEY, SWEEP_GROUP, user_errors_as_failures
from studyllm_pipeline.checks import quality_result, quality_spec
from studyllm_pipeline.partitions import dataset_and_k, dataset_by_k, partition_key, sweep_backfill_policy
from studyllm_pipeline.lineage import check_partition_links, provenance_check_spec, record_materializations
from studyllm_pipeline.tables import as_table
from studyllm_pipeline.resources import EmbedderResource, StudyllmDatabase, SummarizerResource

_DEFAULTS = SweepConfig()
PREPARED = ("dataset_snapshot", "pca_projection", "pca_basis")


class SweepSettings(dg.Config):
    """The k-LLMmeans settings of the sweep step (defaults are `studyllm sweep`'s); K comes from the partitions."""

    method: str = Field(
        default=DEFAULT_METHOD,
        description="kmeans (spherical k-means; k-LLMmeans with the summariser) or ksubspaces (rank-`rank` subspaces)",
    )
    rank: Optional[int] = Field(
        default=None, description=f"subspace rank of method ksubspaces (default {DEFAULT_RANK}; 0 is k-means)"
    )
    n_restarts: int = _DEFAULTS.n_restarts
    llm_rounds: int = _DEFAULTS.llm_rounds
    iters_per_round: int = _DEFAULTS.iters_per_round
    samples_per_cluster: int = _DEFAULTS.samples_per_cluster
    n_representatives: int = _DEFAULTS.n_representatives
    summarize_restarts: str = _DEFAULTS.summarize_restarts
    metric: str = _DEFAULTS.metric
    seed: int = _DEFAULTS.seed
    breathing: bool = Field(
        default=_DEFAULTS.breathing,
        description="breathing k-means (Fritzke 2020) on each K's best restart; with summaries, the restart the "
                    "summary rounds start from (docs/methods.md)",
    )
    breathing_depth: Optional[int] = Field(
        default=_DEFAULTS.breathing_depth, description="centroids moved per breath (default max(5, K // 3))"
    )

    def sweep_config(self) -> SweepConfig:
        """The core's SweepConfig (pca_dim None: the inputs are projected already); InputError for a bad method."""
        settings = self.model_dump()
        method = method_settings(settings.pop("method"), settings.pop("rank"))
        return SweepConfig(**settings, **method)


def _spec(name: str, deps: list[str], description: str) -> dg.AssetSpec:
    return dg.AssetSpec(name, deps=deps, skippable=True, group_name=SWEEP_GROUP, description=description,
                        kinds=PARQUET, **SPENDS_MONEY)  # the k-LLMmeans rounds summarise and embed through providers


NO_EMPTY = "no_empty_cluster"
ONE_SUMMARY = "one_summary_per_cluster"
CHECKS = [
    quality_spec("clusters", NO_EMPTY, partitions_def=dataset_by_k,
                 description="K is at most the number of texts and every one of the K clusters has members (an empty "
                             "cluster makes K a smaller K in disguise). Blocking: the report would compare it. A run "
                             "over a K range gives one result naming each K that failed."),
    quality_spec("cluster_summaries", ONE_SUMMARY, partitions_def=dataset_by_k,
                 description="When the sweep summarises (llm_rounds > 0), every cluster has exactly one non-empty "
                             "summary. Blocking: the report shows them as what each cluster is about."),
    *(provenance_check_spec(name, dataset_by_k) for name in TABLES),  # a result per K, also in a ranged run
]


@dg.multi_asset(
    name="sweep",
    specs=[
        _spec("clusters", list(PREPARED), "Cluster of every text at this K: row, k, label, cost."),
        _spec("cluster_summaries", ["clusters"],
              "Per cluster: size, summary (the last k-LLMmeans round's), representatives."),
        _spec("cluster_metrics", ["clusters"], "Scores of this K: silhouette, stability, coverage, label metrics."),
    ],
    check_specs=CHECKS,
    ins={name: dg.AssetIn() for name in PREPARED},
    partitions_def=dataset_by_k,
    backfill_policy=sweep_backfill_policy(),  # a K range per run, or STUDYLLM_SWEEP_KS_PER_RUN
    pool=API_POOL,
    can_subset=False,
)
@user_errors_as_failures
def sweep_k(
    context: dg.AssetExecutionContext,
    config: SweepSettings,
    dataset_snapshot,
    pca_projection,
    pca_basis,
    database: StudyllmDatabase,
    embedder: EmbedderResource,
    summarizer: SummarizerResource,
):
    """k-LLMmeans at every K of the run's partitions, one dataset after the other."""
    engine = database.engine()
    recipe = SweepRecipe(embedder.service(engine), summarizer.service(engine))
    results = database.sweep_results()
    by_dataset: dict[str, list[int]] = {}
    for key in context.partition_keys:
        dataset, k = dataset_and_k(key)
        by_dataset.setdefault(dataset, []).append(k)
    one = len(by_dataset) == 1  # the IO manager gives one value for one upstream partition, a dict for several
    problems = []
    verdicts: dict[str, dict[str, Verdict]] = {NO_EMPTY: {}, ONE_SUMMARY: {}}
    made: list[tuple[str, str, int]] = []  # (asset, partition, provenance group) of every done K
    for dataset, ks in by_dataset.items():
        snapshot, z, basis = ((value if not one else {dataset: value})[dataset]
                              for value in (dataset_snapshot, pca_projection, pca_basis))

        # One run per (dataset, K) at a time, however it was launched (a ranged run carries no partition
        # tag for the run queue to limit): a run whose K overlap waits here, saying for which run.
        with results.hold(dataset, ks, holder=f"run {context.run.run_id}", notice=context.log.info):
            rows, texts = snapshot["row"].to_numpy(), snapshot["text"].tolist()  # once: a million texts per K was 0.1 s

            def record(item: KResult, dataset: str = dataset, rows: np.ndarray = rows, texts: list[str] = texts) -> None:
                scores = results.save(dataset, item, rows, texts, run_id=context.run.run_id)
                done[item.k] = scores

            done: dict[int, dict] = {}
            groups: dict[int, dict[str, int]] = {}
            sweep = recipe.begin(  # checks the settings before anything is recorded
                z, texts, config.sweep_config(), ks=ks,
                labels=label_codes(snapshot["label"].tolist()) if "label" in snapshot else None,
                project=projector(basis), groups=lambda k: (groups[k]["cluster_summaries"], groups[k]["clusters"]),
                refuse_beyond_texts=True, notice=context.log.info, on_k=record,
            )
            results.start(dataset, ks, run_id=context.run.run_id)
            groups.update(_record_provenance(context, engine, dataset, ks, config))
            try:
                for item in sweep:
                    yield from _materializations(dataset, item, done[item.k], groups[item.k])
                    key = partition_key(dataset, item.k)
                    verdicts[NO_EMPTY][key] = clusters_verdict(item.clustering.labels, item.k)
                    verdicts[ONE_SUMMARY][key] = summaries_verdict(item.summaries, item.k, expected=config.llm_rounds > 0)
                    made += [(name, key, group) for name, group in groups[item.k].items()]
                if sweep.run.error is None:  # the second pass, as `studyllm sweep` runs it (Sweep.choose)
                    for item in _second_pass(sweep):
                        record(item)  # the improved K's tables replace the swept ones
                        yield from _materializations(dataset, item, done[item.k], groups[item.k])
                        key = partition_key(dataset, item.k)
                        verdicts[NO_EMPTY][key] = clusters_verdict(item.clustering.labels, item.k)
                        verdicts[ONE_SUMMARY][key] = summaries_verdict(item.summaries, item.k, expected=config.llm_rounds > 0)
            except BaseException as exc:  # noqa: BLE001 - an interrupt between two K: the done ones are reported
                sweep.run.error = sweep.run.error or exc
            results.finish(dataset, sweep.run, run_id=context.run.run_id)
            if sweep.run.refused:
                context.log.warning(f"{dataset}: " + "; ".join(sweep.run.refused.values()) + ": not clustered")
            error = sweep.run.error
            if error is not None and not isinstance(error, Exception):
                raise error  # an interrupt (a cancelled run): the done K are stored and reported
            if not sweep.run.complete:
                problems.append(f"{dataset}: {sweep.run.problem()}")
    for name, asset in ((NO_EMPTY, "clusters"), (ONE_SUMMARY, "cluster_summaries")):
        if verdicts[name]:
            yield quality_result(combine(verdicts[name]), asset=asset, name=name)
    if made:
        yield from check_partition_links(context, engine, made)
    if problems:
        raise dg.Failure(description="; ".join(problems) + "; the done K are stored, run again for the rest",
                         allow_retries=False)


def _second_pass(sweep) -> list[KResult]:  # noqa: ANN001 - the recipe's Sweep
    """The K of the run the core's second pass improved (algorithms.focus, after the run's K loop: the K near
    the first choice re-optimised from their neighbours' solutions), so the stored per-K tables, and the
    report's choice made from them, are what `studyllm sweep` chooses from. Over the K of this run only: a
    range split over several runs (STUDYLLM_SWEEP_KS_PER_RUN, one-K runs) gets the pass per part."""
    choice = sweep.choose()
    improved = {int(k) for k in ((choice.details.get("second_pass") or {}).get("improved") or {})} if choice else set()
    return [item for item in sweep.run.results if item.k in improved]


def _record_provenance(context: dg.AssetExecutionContext, engine, dataset: str, ks: list[int],  # noqa: ANN001
                       config: SweepSettings) -> dict[int, dict[str, int]]:
    """K -> the provenance groups of its three tables, linked to what they are made from: every K of the
    run in one transaction."""
    made = [(dg.AssetKey(name), partition_key(dataset, k)) for k in ks for name in TABLES]
    ids = record_materializations(context, engine, made, config=config.model_dump())
    groups: dict[int, dict[str, int]] = {k: {} for k in ks}
    for (key, partition), group_id in zip(made, ids, strict=True):
        groups[dataset_and_k(partition)[1]][key.path[-1]] = group_id
    return groups


def _materializations(dataset: str, item: KResult, scores: dict, groups: dict[str, int]):
    """One done K as a materialization of its partition of each of the three assets."""
    key = partition_key(dataset, item.k)
    sizes = item.clustering.sizes.tolist()
    summaries = item.summaries or []
    yield dg.AssetMaterialization("clusters", partition=key, metadata={
        "k": item.k, "dagster/row_count": len(item.clustering.labels),
        "objective": round_value("objective", item.clustering.objective), "iterations": int(item.clustering.n_iter),
        "restart_objectives": dg.MetadataValue.json([round_value("objective", r.objective) for r in item.restarts.runs]),
        "sizes": dg.MetadataValue.json(sizes), "group_id": dg.MetadataValue.text(str(groups["clusters"])),
    })
    yield dg.AssetMaterialization("cluster_summaries", partition=key, metadata={
        "dagster/row_count": item.k, "summarize_calls": int(item.restarts.n_summarize_calls),
        "group_id": dg.MetadataValue.text(str(groups["cluster_summaries"])),
        "summaries": as_table(pd.DataFrame({"cluster": range(item.k), "size": sizes,
                                            "summary": summaries or [None] * item.k})),
    })
    numbers = {name: round_value(name, value) for name, value in scores.items()
               if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and name != "k"}
    yield dg.AssetMaterialization("cluster_metrics", partition=key, metadata={
        "k": item.k, **numbers, "group_id": dg.MetadataValue.text(str(groups["cluster_metrics"])),
    })
