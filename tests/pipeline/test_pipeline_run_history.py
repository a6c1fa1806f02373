"""Run history through the Dagster definitions: the same asset partition materialised by two runs with
different config keeps two records, each with its own run id and config, and one run's lineage holds
only what that run made (and the records of what it read)."""

import json

import dagster as dg
import pandas as pd

from studyllm_core.cli import main
from studyllm_core.services.provenance import ProvenanceService
from studyllm_pipeline.definitions import SWEEP_ASSETS
from studyllm_pipeline.jobs import PREPARE
from studyllm_pipeline.partitions import datasets

PREPARED = {"dataset_snapshot", "embeddings", "pca_projection", "pca_basis"}


def prepare(instance, resources, path, **config):
    run_config = {"ops": {"dataset_snapshot": {"config": {"source_path": str(path), **config}}}}
    result = dg.materialize(SWEEP_ASSETS, selection=PREPARE, partition_key="small", instance=instance,
                            resources=resources, run_config=run_config)
    assert result.success
    return result


def test_two_runs_of_one_partition_keep_two_records_and_their_own_lineage(instance, resources, tmp_path, engine, capsys):
    path = tmp_path / "small.csv"
    pd.DataFrame({"text": [f"note {i} about {t}" for i, t in enumerate(["stars", "bread", "trains"] * 4)],
                  "label": ["s", "b", "t"] * 4}).to_csv(path, index=False)
    instance.add_dynamic_partitions(datasets.name, ["small"])
    first = prepare(instance, resources, path)
    second = prepare(instance, resources, path, label_column="label")
    assert all(c.passed for r in (first, second) for c in r.get_asset_check_evaluations()
               if c.check_name == "provenance_links")  # the check reads this run's record

    prov = ProvenanceService(engine)
    history = prov.history("dataset_snapshot", "small")
    assert [r.run_id for r in history] == [second.run_id, first.run_id]
    assert [r.config.get("label_column") for r in history] == ["label", None]
    assert history[0].versions["dagster"] == dg.__version__

    for result in (first, second):
        lineage = prov.run_lineage(result.run_id)
        assert {r.asset for r in lineage} == PREPARED and {r.partition for r in lineage} == {"small"}
        assert {r.run_id for r in lineage} == {result.run_id}
        embeddings = next(r for r in lineage if r.asset == "embeddings")
        assert [(i["group"], i["run_id"]) for i in embeddings.inputs] == [("dataset_snapshot[small]", result.run_id)]
        assert embeddings.versions["embedding"] == "openai-compatible:" + embeddings.config["model"]

    assert main(["provenance", "--run", first.run_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["records"]
    assert {r["asset"] for r in shown} == PREPARED and {r["run_id"] for r in shown} == {first.run_id}
    assert main(["provenance", "--asset", "dataset_snapshot", "--partition", "small", "--json"]) == 0
    changes = json.loads(capsys.readouterr().out)["history"][0]["config_changes"]
    assert changes == {"label_column": [None, "label"]}
