"""The artifact IO manager's handover: within one run a step gets the value the step before wrote
instead of reading the file back (the embeddings of a million texts are 1.5 GB), and only while that
file is still the one the run wrote; across runs every load reads and verifies the file."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from upath import UPath

from studyllm_core.errors import IntegrityError
from studyllm_core.services.artifacts import ArtifactService
from studyllm_pipeline.definitions import SWEEP_ASSETS
from studyllm_pipeline.io_manager import NpyArtifacts
from studyllm_pipeline.jobs import PREPARE
from studyllm_pipeline.partitions import datasets
from support import sweep_ks, topic_corpus


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """The artifact paths read back from disk (ArtifactService.read, which still does the reading)."""
    seen: list[str] = []
    read = ArtifactService.read

    def spy(self, path):  # noqa: ANN001, ANN202
        seen.append(str(path))
        return read(self, path)

    monkeypatch.setattr(ArtifactService, "read", spy)
    return seen


def test_a_run_hands_each_written_value_to_the_next_step_and_the_next_run_reads_the_files(
        instance, resources, pipeline_env, tmp_path, reads):
    texts, labels = topic_corpus(per_topic=6)
    source = tmp_path / "topics.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(source, index=False)
    instance.add_dynamic_partitions(datasets.name, ["topics"])
    config = {"ops": {"dataset_snapshot": {"config": {"source_path": str(source), "label_column": "label"}}}}
    result = dg.materialize(SWEEP_ASSETS, selection=PREPARE, partition_key="topics", instance=instance,
                            resources=resources, run_config=config)
    assert result.success
    assert reads == []  # the snapshot went to the embeddings step, the embeddings to the PCA, from memory

    assert sweep_ks(instance, resources, "topics", [3]).success
    read_names = sorted(path.rsplit("/", 2)[-2] for path in reads)
    assert read_names == ["dataset_snapshot", "pca_basis", "pca_projection"]  # a new run: the files, verified


def _io_manager(resources):
    return NpyArtifacts(database=resources["database"]).create_io_manager(dg.build_init_resource_context())


def _contexts(name: str):
    key = dg.AssetKey(name)
    output = dg.build_output_context(asset_key=key)
    return output, dg.build_input_context(asset_key=key, upstream_output=output)


def test_the_handover_is_once_and_only_of_the_file_the_run_wrote(resources, pipeline_env, tmp_path, reads):
    manager = _io_manager(resources)
    path = UPath(tmp_path / "home" / "artifacts" / "pca_projection.npy")
    array = np.arange(12, dtype=np.float32).reshape(4, 3)
    output, given = _contexts("pca_projection")

    manager.dump_to_path(output, array, path)
    assert manager.load_from_path(given, path) is array and reads == []
    again = manager.load_from_path(given, path)  # a second loader reads the file: no two steps share one value
    assert again is not array and np.array_equal(again, array) and len(reads) == 1

    manager.dump_to_path(output, array, path)
    changed = array.copy()
    changed[0, 0] = -1
    np.save(path, changed)  # someone edits the file between two steps of the run: same size, new bytes
    with pytest.raises(IntegrityError, match="changed after it was written"):
        manager.load_from_path(given, path)
