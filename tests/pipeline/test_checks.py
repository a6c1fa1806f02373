"""Asset checks in the pipeline: a failing data-quality check stops wrong data before the next step
pays for it; provenance_links fails when a stored link is not what Dagster's asset graph says; the
report warns when fewer than two K are done."""

import dagster as dg
import pandas as pd
from sqlalchemy import text

from studyllm_pipeline.definitions import SWEEP_ASSETS
from studyllm_pipeline.jobs import PREPARE
from studyllm_pipeline.partitions import datasets
from support import sweep_ks, sweep_run_config


def prepare(instance, resources, path, name="small", **config):
    instance.add_dynamic_partitions(datasets.name, [name])
    run_config = {"ops": {"dataset_snapshot": {"config": {"source_path": str(path), **config}}}}
    return dg.materialize(SWEEP_ASSETS, selection=PREPARE, partition_key=name, instance=instance, resources=resources,
                          run_config=run_config, raise_on_error=False)


def evaluations(result) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(c.asset_key.to_user_string(), c.check_name): c for c in result.get_asset_check_evaluations()}


def test_a_snapshot_of_mostly_empty_rows_fails_its_check_and_nothing_is_embedded(instance, resources, tmp_path, stub):
    path = tmp_path / "gappy.csv"
    pd.DataFrame({"text": [f"note {i}" if i % 2 else "" for i in range(20)],
                  "label": ["a"] * 20}).to_csv(path, index=False)
    result = prepare(instance, resources, path, label_column="label")
    assert not result.success
    check = evaluations(result)[("dataset_snapshot", "usable_rows")]
    assert not check.passed and check.partition == "small"
    assert check.description == "10 of 20 rows dropped (50% > 20%): is the text column the right one?"
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"dataset_snapshot"}  # blocking: embeddings never ran
    assert stub.stats.requests_total == 0


def test_unlabelled_rows_fail_the_snapshot_check(instance, resources, tmp_path):
    path = tmp_path / "labels.csv"
    pd.DataFrame({"text": [f"note {i}" for i in range(12)], "label": ["a", "b", ""] * 4}).to_csv(path, index=False)
    result = prepare(instance, resources, path, label_column="label")
    check = evaluations(result)[("dataset_snapshot", "usable_rows")]
    assert not check.passed and check.description == "4 of 12 rows have an empty 'label'"


BREAK_LINK = """
CREATE FUNCTION drop_link() RETURNS trigger AS $$
BEGIN
    IF (SELECT g.name FROM materializations m JOIN groups g ON g.id = m.group_id WHERE m.id = NEW.materialization_id)
           = 'pca_projection[small]'
       AND (SELECT name FROM groups WHERE id = NEW.input_group_id) = 'embeddings[small]' THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER drop_link BEFORE INSERT ON materialization_inputs FOR EACH ROW EXECUTE FUNCTION drop_link();
"""


def test_provenance_links_fails_when_a_stored_link_is_missing(instance, resources, tmp_path, engine):
    """The database silently drops one input of this run's record (pca_projection <- embeddings): the
    check, which asks Dagster's asset graph what the projection reads, names it; the other links pass."""
    path = tmp_path / "fine.csv"
    pd.DataFrame({"text": [f"note {i} about {t}" for i, t in enumerate(["stars", "bread", "trains"] * 4)]}).to_csv(path, index=False)
    with engine.begin() as conn:
        conn.execute(text(BREAK_LINK))
    result = prepare(instance, resources, path)
    checks = evaluations(result)
    broken = checks[("pca_projection", "provenance_links")]
    assert not broken.passed and broken.description == "missing links from embeddings[small]"
    assert broken.metadata["missing"].value == ["embeddings[small]"]
    assert checks[("pca_basis", "provenance_links")].passed and checks[("embeddings", "provenance_links")].passed
    assert result.success  # provenance does not stop the data: the check is not blocking


BREAK_K_LINK = BREAK_LINK.replace("pca_projection[small]", "cluster_metrics[small|3]").replace("embeddings[small]", "clusters[small|3]")


def test_provenance_links_of_a_ranged_run_name_the_k_with_a_missing_link(instance, resources, tmp_path, engine):
    """A run over K = 2..4 (one step for three partitions): the database drops the link of K=3's metrics to
    its clusters. The check gives every K of every per-K asset its own result for its partition: the broken
    one fails naming the link, the others pass; the step's summary names the partition; the run goes on."""
    path = tmp_path / "fine.csv"
    pd.DataFrame({"text": [f"note {i} about {t}" for i, t in enumerate(["stars", "bread", "trains"] * 4)]}).to_csv(path, index=False)
    assert prepare(instance, resources, path).success
    with engine.begin() as conn:
        conn.execute(text(BREAK_K_LINK))
    result = sweep_ks(instance, resources, "small", [2, 3, 4], sweep_run_config(n_restarts=1, llm_rounds=1))
    assert result.success  # provenance does not stop the data: the check is not blocking
    links = {(c.asset_key.to_user_string(), c.partition): c for c in result.get_asset_check_evaluations()
             if c.check_name == "provenance_links"}
    per_k = {key: c for key, c in links.items() if key[1] is not None}
    assert set(per_k) == {(a, f"small|{k}") for a in ("clusters", "cluster_summaries", "cluster_metrics") for k in (2, 3, 4)}
    broken = per_k[("cluster_metrics", "small|3")]
    assert not broken.passed and broken.description == "missing links from clusters[small|3]"
    assert broken.metadata["partition"].value == "small|3"
    assert all(c.passed for key, c in per_k.items() if key != ("cluster_metrics", "small|3")), \
        [(key, c.description) for key, c in per_k.items() if not c.passed]
    assert per_k[("clusters", "small|2")].metadata["expected_inputs"].value == [
        "dataset_snapshot[small]", "pca_basis[small]", "pca_projection[small]"]
    summary = links[("cluster_metrics", None)]
    assert not summary.passed and summary.metadata["failed"].value == ["small|3"]
    assert links[("clusters", None)].passed


def test_a_report_of_one_k_warns(instance, resources, tmp_path):
    path = tmp_path / "fine.csv"
    pd.DataFrame({"text": [f"note {i} about {t}" for i, t in enumerate(["stars", "bread", "trains"] * 4)]}).to_csv(path, index=False)
    assert prepare(instance, resources, path).success
    assert sweep_ks(instance, resources, "small", [2], sweep_run_config(n_restarts=1, llm_rounds=1)).success
    result = dg.materialize(SWEEP_ASSETS, selection=["sweep_report"], partition_key="small", instance=instance,
                            resources=resources)
    check = evaluations(result)[("sweep_report", "requested_k_done")]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description == "only 1 K done: a choice of K needs at least two to compare"


def test_a_zero_vector_from_a_corrupted_cache_fails_the_embeddings_check_and_stops_the_run(instance, resources, tmp_path,
                                                                                            engine, stub):
    """A cache row changed behind studyllm's back (all zeros): the run that reuses it stops at the blocking
    finite_vectors check, so PCA and the sweep never see the vector."""
    path = tmp_path / "fine.csv"
    pd.DataFrame({"text": [f"note {i} about {t}" for i, t in enumerate(["stars", "bread", "trains"] * 4)]}).to_csv(path, index=False)
    assert prepare(instance, resources, path).success
    with engine.begin() as conn:
        conn.execute(text("UPDATE embedding_vectors SET vector = array_fill(0, ARRAY[dimension])::real[]::vector "
                          "WHERE id = (SELECT min(id) FROM embedding_vectors)"))
    requests = stub.stats.requests_total
    result = prepare(instance, resources, path)
    assert not result.success and stub.stats.requests_total == requests  # everything came from the cache
    check = evaluations(result)[("embeddings", "finite_vectors")]
    assert not check.passed and check.description == "1 vectors are all zeros (no direction to compare)"
    assert check.partition == "small"
    assert "pca_projection" not in {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
