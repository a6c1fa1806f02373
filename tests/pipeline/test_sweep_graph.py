"""The whole sweep graph on a small dataset and a K range of three (the fewest the K rule compares), on a Postgres-backed test instance."""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from studyllm_core.db.groups import GroupRepository
from studyllm_core.services.artifacts import sha256_of
from studyllm_core.services.provenance import ProvenanceService
from studyllm_pipeline.definitions import SWEEP_ASSETS
from studyllm_pipeline.jobs import PREPARE
from studyllm_pipeline.partitions import datasets
from support import sweep_ks, sweep_run_config

TOPICS = {"space": "planets orbit the sun in the night sky", "food": "bake bread with flour and yeast", "code": "python functions return values"}


@pytest.fixture
def small_dataset(tmp_path) -> Path:
    rows = [(topic, f"{phrase}, note {i}") for topic, phrase in TOPICS.items() for i in range(12)]
    path = tmp_path / "small.csv"
    pd.DataFrame(rows, columns=["label", "text"]).to_csv(path, index=False)
    return path


def run(instance, resources, selection, partition_key, run_config=None):
    return dg.materialize(
        SWEEP_ASSETS, selection=selection, partition_key=partition_key, instance=instance, resources=resources,
        run_config=run_config,
    )


def materialize_all(instance, resources, path, ks=(2, 3, 4)):
    """Prepare; sweep the K partitions in one run (as a single-run backfill does); report."""
    instance.add_dynamic_partitions(datasets.name, ["small"])
    config = {"ops": {"dataset_snapshot": {"config": {"source_path": str(path), "label_column": "label"}}}}
    results = [run(instance, resources, PREPARE, "small", config)]
    results.append(sweep_ks(instance, resources, "small", ks, sweep_run_config(n_restarts=3, llm_rounds=1)))
    results.append(run(instance, resources, ["sweep_report"], "small"))
    return results


def test_full_graph_artifacts_and_provenance(instance, resources, small_dataset, engine):
    results = materialize_all(instance, resources, small_dataset)
    assert all(r.success for r in results)
    checks = [c for r in results for c in r.get_asset_check_evaluations()]
    # provenance and data quality of snapshot, embeddings, projection, basis; clusters and summaries; the
    # provenance of the three per-K assets (one per K and one summing up the step); the report's two
    assert len(checks) == 4 * 2 + 2 + 3 * (3 + 1) + 2
    assert all(c.passed for c in checks), [c.description for c in checks if not c.passed]
    partitions = {(c.asset_key.to_user_string(), c.check_name): c.partition for c in checks}
    assert partitions[("embeddings", "finite_vectors")] == partitions[("sweep_report", "provenance_links")] == "small"
    clusters_check = next(c for c in checks if c.check_name == "no_empty_cluster")
    assert clusters_check.partition is None  # a run over a K range: the result names its partitions
    assert clusters_check.metadata["partitions"].value == ["small|2", "small|3", "small|4"]
    materialized = {(e.asset_key.to_user_string(), e.partition) for e in results[1].asset_materializations_for_node("sweep")}
    assert materialized == {(a, f"small|{k}") for a in ("clusters", "cluster_summaries", "cluster_metrics") for k in (2, 3, 4)}

    report_meta = results[-1].asset_materializations_for_node("sweep_report")[0].metadata
    per_k = report_meta["per_k"]  # a real table: every column there, described, floats rounded
    assert isinstance(per_k, dg.TableMetadataValue) and {"acc", "nmi", "ari", "score"} <= {c.name for c in per_k.schema.columns}
    assert {"subsample_stability", "bic"} <= {c.name for c in per_k.schema.columns}  # issue 15's K criteria
    assert [c.name for c in per_k.schema.columns if not c.description] == []
    assert all(len(str(r.data["silhouette"]).split(".")[-1]) <= 3 for r in per_k.records if r.data["silhouette"] is not None)
    assert report_meta["dagster/row_count"].value == 3 and "dagster/column_schema" in report_meta
    assert isinstance(report_meta["group_id"], dg.TextMetadataValue)  # an id, not a series to plot
    report = results[-1].asset_value("sweep_report")
    assert sorted(report["k"]) == [2, 3, 4] and report["best"].sum() == 1 and set(report["status"]) == {"done"}
    assert report.loc[report["best"], "k"].item() == 3  # the three topics
    metadata = results[-1].asset_materializations_for_node("sweep_report")[0].metadata
    assert metadata["best_k"].value == 3 and metadata["choice"].value.startswith("K = 3")
    assert "BIC" in metadata["rule"].value
    assert {"silhouette", "stability_ari", "nmi", "acc", "score"} <= set(report.columns)

    # Every artifact on disk matches its call_artifacts row; every output was recorded.
    with engine.connect() as conn:
        artifacts = conn.execute(text("SELECT uri, sha256, byte_size FROM call_artifacts")).all()
    paths = {Path(uri.removeprefix("file://")): (sha, size) for uri, sha, size in artifacts}
    # snapshot, embeddings, projection, basis; clusters, summaries, metrics of each K; report
    assert len(paths) == 4 + 3 * 3 + 1
    for path, (sha, size) in paths.items():
        assert path.exists() and sha256_of(path) == sha and path.stat().st_size == size

    # GroupLinks reproduce the asset lineage.
    groups = GroupRepository(engine)
    prov = ProvenanceService(engine)

    def inputs(name):
        group = groups.find_group(name)
        return sorted(g.name for g in prov.inputs_of(group.id))

    assert inputs("dataset_snapshot[small]") == ["small"]
    assert inputs("embeddings[small]") == ["dataset_snapshot[small]"]
    assert inputs("pca_projection[small]") == ["embeddings[small]"]
    assert inputs("clusters[small|2]") == ["dataset_snapshot[small]", "pca_basis[small]", "pca_projection[small]"]
    assert inputs("cluster_summaries[small|3]") == ["clusters[small|3]"]
    assert inputs("cluster_metrics[small|3]") == ["clusters[small|3]"]
    assert inputs("sweep_report[small]") == [f"{name}[small|{k}]" for name in ("cluster_metrics", "cluster_summaries") for k in (2, 3, 4)]
    run_group = groups.lookup("run", "sweep[small]")
    steps = [g.name for g in groups.get_run_step_sequence(run_group.id)]
    assert steps[:3] == ["dataset_snapshot[small]", "embeddings[small]", "pca_projection[small]"] and steps[-1] == "sweep_report[small]"
    embedding_group = groups.find_group("embeddings[small]")
    assert embedding_group.group_type == "embedding_batch" and groups.member_ids(embedding_group.id)
    summaries = groups.find_group("cluster_summaries[small|2]")
    assert summaries.group_type == "summarization_batch" and groups.member_ids(summaries.id)  # the round summaries' calls


def test_rerun_reuses_cached_embeddings_and_groups(instance, resources, small_dataset, engine, stub):
    materialize_all(instance, resources, small_dataset, ks=(2, 2))
    requests = stub.stats.requests_total
    assert requests > 0 and stub.stats.snapshot()["embedding_texts_unique"] == 36  # the first run did call the API
    with engine.connect() as conn:
        groups_before = conn.execute(text("SELECT count(*) FROM groups")).scalar_one()
    assert run(instance, resources, PREPARE, "small").success
    assert stub.stats.requests_total == requests  # every vector came from the cache
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM groups")).scalar_one() == groups_before


def test_integrity_of_artifacts_is_checked_on_load(instance, resources, small_dataset, engine):
    materialize_all(instance, resources, small_dataset, ks=(2, 2))
    with engine.connect() as conn:
        uri = conn.execute(text("SELECT uri FROM call_artifacts WHERE uri LIKE '%pca_projection%'")).scalar_one()
    path = Path(uri.removeprefix("file://"))
    np.save(path, np.zeros((3, 3)))  # someone edits the file behind our back
    with pytest.raises(Exception, match="was changed after it was written"):
        sweep_ks(instance, resources, "small", [2])
