"""ArtifactService (files + sha256 records) and ProvenanceService (groups and edges) on the real database."""

import numpy as np
import pandas as pd
import pytest

from studyllm_core.errors import IntegrityError, NotFoundError
from studyllm_core.files import OutputError
from studyllm_core.services.artifacts import ArtifactService, sha256_of
from studyllm_core.services.provenance import ProvenanceService


def test_artifacts_round_trip_and_are_recorded(engine, tmp_path):
    service = ArtifactService(engine, tmp_path)
    gid = ProvenanceService(engine).record_step("step", "s")
    array_path = service.path_for("ds", "labels", suffix=".npy")
    table_path = service.path_for("ds", "table", suffix=".parquet")
    a = service.write(np.arange(6, dtype=np.int32).reshape(2, 3), array_path, group_id=gid)
    t = service.write(pd.DataFrame({"x": [1, 2], "t": ["a", "b"]}), table_path, group_id=gid)
    assert a.sha256 == sha256_of(array_path) and a.byte_size == array_path.stat().st_size
    np.testing.assert_array_equal(service.read(array_path), np.arange(6).reshape(2, 3))
    pd.testing.assert_frame_equal(service.read(table_path), pd.DataFrame({"x": [1, 2], "t": ["a", "b"]}))
    assert {r.content_type for r in service.groups.artifacts(group_id=gid)} == {"application/x-npy", "application/vnd.apache.parquet"}
    assert t.artifact_id != a.artifact_id
    report_path = tmp_path / "ds" / "report.json"
    r = service.write({"best_k": 3, "scores": [0.5, None]}, report_path, group_id=gid)
    assert service.read(report_path) == {"best_k": 3, "scores": [0.5, None]} and r.content_type == "application/json"
    with pytest.raises(ValueError):  # strict JSON: NaN has no spelling
        service.write({"score": float("nan")}, report_path, group_id=gid)


def test_changed_or_removed_artifacts_are_refused(engine, tmp_path):
    service = ArtifactService(engine, tmp_path)
    path = service.path_for("x", suffix=".npy")
    service.write(np.zeros(4), path, group_id=None)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="was changed after it was written"):
        service.read(path)
    path.unlink()
    with pytest.raises(IntegrityError, match="was removed"):
        service.read(path)
    with pytest.raises(IntegrityError, match="not a recorded artifact"):
        service.read(tmp_path / "other.npy")


def test_an_npy_artifact_streams_in_and_out_without_a_copy_of_the_array(engine, tmp_path):
    """A large array (the pipeline's embeddings: 1.5 GB at a million texts) is written and read through
    chunks, hashed on the way: the bytes np.save writes, the array's memory and not two or three times it."""
    import io
    import tracemalloc

    service = ArtifactService(engine, tmp_path)
    vectors = np.random.default_rng(0).standard_normal((64_000, 200)).astype(np.float32)  # 51 MB (numpy writes 16 MiB chunks)
    path = service.path_for("big", suffix=".npy")
    tracemalloc.start()
    try:
        stored = service.write(vectors, path, group_id=None)
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        back = service.read(path)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expected = io.BytesIO()
    np.save(expected, vectors, allow_pickle=False)
    assert path.read_bytes() == expected.getvalue() and stored.sha256 == sha256_of(path)
    assert stored.byte_size == len(expected.getvalue())
    np.testing.assert_array_equal(back, vectors)
    assert write_peak < 0.1 * vectors.nbytes  # straight from the array's memory: not even a copy per chunk
    assert read_peak < 1.1 * vectors.nbytes  # the array itself, read into place
    data = bytearray(path.read_bytes())  # one byte flipped in the middle of the data (hashed on the helper thread)
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="was changed after it was written"):
        service.read(path)
    service.write(vectors, path, group_id=None)
    fortran = np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4))
    service.write(fortran, path, group_id=None)
    np.testing.assert_array_equal(service.read(path), fortran)
    with path.open("ab") as handle:  # bytes after the array are part of the file: a changed file
        handle.write(b"x")
    with pytest.raises(IntegrityError, match="was changed after it was written"):
        service.read(path)


@pytest.mark.parametrize("array", [
    pytest.param(np.random.default_rng(1).standard_normal((300, 7)).astype(np.float32), id="float32"),
    pytest.param(np.arange(10, dtype=">i4"), id="big-endian"),
    pytest.param(np.random.default_rng(2).standard_normal((20, 20))[::2], id="strided"),
    pytest.param(np.asfortranarray(np.arange(6.0).reshape(2, 3)), id="fortran"),
    pytest.param(np.zeros((0, 3), dtype=np.float32), id="empty"),
    pytest.param(np.array(2.5), id="scalar"),
    pytest.param(np.array([True, False, True]), id="bool"),
    pytest.param(np.array(["ab", "c"]), id="unicode"),
    pytest.param(np.zeros(2, dtype=[("a", "<f4"), ("b", "<i2")]), id="structured"),
])
def test_every_npy_artifact_is_the_file_np_save_writes_and_reads_back_equal(engine, tmp_path, array):
    import io

    service = ArtifactService(engine, tmp_path)
    path = service.path_for("a", suffix=".npy")
    stored = service.write(array, path, group_id=None)
    expected = io.BytesIO()
    np.save(expected, array, allow_pickle=False)
    assert path.read_bytes() == expected.getvalue() and stored.sha256 == sha256_of(path)
    back = service.read(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_a_cut_short_npy_artifact_is_a_changed_artifact(engine, tmp_path):
    service = ArtifactService(engine, tmp_path)
    path = service.path_for("x", suffix=".npy")
    service.write(np.ones((1000, 8), dtype=np.float32), path, group_id=None)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(IntegrityError, match="was changed after it was written"):
        service.read(path)


def test_unsupported_values_are_refused(engine, tmp_path):
    service = ArtifactService(engine, tmp_path)
    with pytest.raises(TypeError, match="takes a numpy array"):
        service.write([1, 2], service.path_for("x", suffix=".npy"), group_id=None)
    with pytest.raises(TypeError, match="artifacts are .npy, .parquet or .json"):
        service.write(np.zeros(1), tmp_path / "x.pkl", group_id=None)


def test_provenance_walks_edges_both_ways_and_orders_steps(engine):
    prov = ProvenanceService(engine)
    run = prov.record_step("run", "sweep")
    data = prov.record_step("dataset", "d", run_id=run, position=0)
    emb = prov.record_step("embedding_batch", "e", inputs=[data], run_id=run, position=1)
    proj = prov.record_step("step", "p", inputs=[emb], run_id=run, position=2)
    k2 = prov.record_step("step", "k2", inputs=[proj], run_id=run, position=3)
    k3 = prov.record_step("step", "k3", inputs=[proj], run_id=run, position=3)
    report = prov.record_step("metrics", "r", inputs=[k2, k3], run_id=run, position=4)
    # Idempotent: recording the same step again adds nothing.
    assert prov.record_step("step", "p", inputs=[emb], run_id=run, position=2) == proj

    p = prov.provenance(report)
    assert [(g.name, d) for g, d in p.ancestors] == [("k2", 1), ("k3", 1), ("p", 2), ("e", 3), ("d", 4)]
    assert [(g.name, d) for g, d in prov.provenance("d").descendants] == [("e", 1), ("p", 2), ("k2", 3), ("k3", 3), ("r", 4)]
    assert [g.name for g in prov.provenance(run).steps] == ["d", "e", "p", "k2", "k3", "r"]
    assert [g.name for g in p.runs] == ["sweep"]
    assert {g.name for g in prov.inputs_of(report)} == {"k2", "k3"}
    assert p.to_dict()["group"]["name"] == "r"
    with pytest.raises(NotFoundError):
        prov.provenance("missing")


def test_a_materialization_is_named_by_the_core_conventions():
    """The pipeline hands over only what Dagster knows; the core names the groups and the run."""
    from studyllm_core.services.provenance import Materialization

    step = Materialization(
        asset="clusters", partition="demo|7", run_id="run-1", group_type="step", position=3,
        upstream={("pca_projection", "demo"): "step", ("dataset_snapshot", "demo"): "dataset"}, config={"seed": 0},
    ).step()
    assert step.name == "clusters[demo|7]" and step.run == "sweep[demo]" and step.position == 3
    assert step.inputs == {"pca_projection[demo]": "step", "dataset_snapshot[demo]": "dataset"}
    assert step.metadata == {"dagster_run_id": "run-1", "asset_key": "clusters", "partition": "demo|7", "config": {"seed": 0}}
    assert step.run_metadata == {"dataset": "demo"}
    unpartitioned = Materialization(asset="provider_comparison", partition=None, run_id="run-2").step()
    assert unpartitioned.name == "provider_comparison" and unpartitioned.run is None


def test_artifacts_on_object_storage_are_whole_objects_recorded_by_url(engine):
    """A UPath root (here fsspec's in-memory file system, as s3:// or gs:// would be): each artifact is
    one object recorded under its URL, read back verified; a changed or removed object is refused."""
    import uuid

    from upath import UPath

    from studyllm_core.config import storage_location

    root = storage_location(f"memory://studyllm-{uuid.uuid4().hex[:8]}/artifacts")
    assert isinstance(root, UPath) and root.protocol == "memory"
    service = ArtifactService(engine, root)
    path = service.path_for("ds", "labels", suffix=".npy")
    stored = service.write(np.arange(5), path, group_id=None)
    assert service.record_for(path).uri == str(path) and str(path).startswith("memory://")
    assert [p.name for p in path.parent.iterdir()] == ["labels.npy"]  # no temporary object left beside it
    np.testing.assert_array_equal(service.read(path), np.arange(5))
    assert stored.byte_size == len(path.read_bytes())
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="was changed after it was written"):
        service.read(path)
    path.unlink()
    with pytest.raises(IntegrityError, match="was removed"):
        service.read(path)

    # A write the storage refuses (here: a "folder" that is an object) is one line, and nothing is recorded.
    service.write(np.zeros(1), root / "taken.npy", group_id=None)
    with pytest.raises(OutputError, match=r"^cannot write memory://.*taken\.npy/x\.npy: .*STUDYLLM_ARTIFACTS_URL"):
        service.write(np.zeros(1), root / "taken.npy" / "x.npy", group_id=None)
    assert service.record_for(root / "taken.npy" / "x.npy") is None


def test_a_local_path_or_file_url_stays_a_local_folder(tmp_path):
    """Local roots keep the atomic rename and their file:// records, whichever way they are named."""
    from pathlib import Path

    from studyllm_core.config import storage_location

    assert storage_location(str(tmp_path)) == tmp_path and type(storage_location(str(tmp_path))) is type(Path())
    assert storage_location(tmp_path.as_uri()) == tmp_path


def test_embeddings_read_back_from_their_artifact_project_exactly_as_in_memory(engine, tmp_path):
    """The pipeline's pca step projects the embeddings artifact as read back (verified, in 16 MiB slices): the
    projection and basis are bit for bit those of the array that was written."""
    from studyllm_core.services.sweep.projection import project_dataset

    service = ArtifactService(engine, tmp_path)
    vectors = np.random.default_rng(3).standard_normal((3000, 64)).astype(np.float32)
    path = service.path_for("embeddings", "ds", suffix=".npy")
    service.write(vectors, path, group_id=None)
    in_memory, from_file = project_dataset(vectors, 8), project_dataset(service.read(path), 8)
    np.testing.assert_array_equal(from_file.projection.Z, in_memory.projection.Z)
    np.testing.assert_array_equal(from_file.basis, in_memory.basis)
