"""Artifacts on object storage: with STUDYLLM_ARTIFACTS_URL naming an fsspec URL (here the in-memory
file system, standing in for s3:// or gs://), the IO manager and the per-K results write every
artifact as one object under that URL, record it by URL, and read it back verified."""

import uuid

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

from studyllm_core.db.groups import GroupRepository
from studyllm_core.errors import IntegrityError
from studyllm_pipeline.definitions import SWEEP_ASSETS
from studyllm_pipeline.jobs import PREPARE
from studyllm_pipeline.partitions import datasets
from support import sweep_ks, topic_corpus


def test_prepare_and_a_k_run_keep_their_artifacts_on_object_storage(instance, resources, pipeline_env, tmp_path, monkeypatch):
    url = f"memory://studyllm-{uuid.uuid4().hex[:8]}/artifacts"
    monkeypatch.setenv("STUDYLLM_ARTIFACTS_URL", url)
    texts, labels = topic_corpus(per_topic=6)
    source = tmp_path / "topics.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(source, index=False)
    instance.add_dynamic_partitions(datasets.name, ["topics"])
    config = {"ops": {"dataset_snapshot": {"config": {"source_path": str(source), "label_column": "label"}}}}
    assert dg.materialize(SWEEP_ASSETS, selection=PREPARE, partition_key="topics", instance=instance,
                          resources=resources, run_config=config).success
    assert sweep_ks(instance, resources, "topics", [3]).success  # reads the prepared artifacts back from the URL

    root = UPath(url)
    stored = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert "pca_projection/topics.npy" in stored and "clusters/topics/3.parquet" in stored, stored
    assert not any(name.rsplit("/", 1)[-1].startswith(".") for name in stored)  # no temporary objects
    uris = [row.uri for row in GroupRepository(resources["database"].engine()).artifacts(limit=100)]
    assert uris and all(uri.startswith(url + "/") for uri in uris), uris
    assert not (tmp_path / "home" / "artifacts").exists()  # nothing went to the local folder

    (root / "pca_projection" / "topics.npy").write_bytes(b"\x93NUMPY changed")
    with pytest.raises(IntegrityError, match="changed after it was written"):
        sweep_ks(instance, resources, "topics", [4], raise_on_error=True)
