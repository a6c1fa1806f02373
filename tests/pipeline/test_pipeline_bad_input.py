"""Bad input fails the run with a clear message in the event log; stored data survives, and the fix re-runs cheaply."""

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import text

from studyllm_pipeline.definitions import SWEEP_ASSETS
from studyllm_pipeline.demo import PER_K, PREPARE
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.resources import EmbedderResource


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = result.get_step_failure_events()
    assert failures, "the run was expected to fail"
    return " ".join(f.event_specific_data.error.message for f in failures)


def materialize(instance, resources, selection, key, path=None):
    config = {"ops": {"dataset_snapshot": {"config": {"source_path": str(path)}}}} if path else None
    return dg.materialize(
        SWEEP_ASSETS, selection=selection, partition_key=key, instance=instance, resources=resources,
        run_config=config, raise_on_error=False,
    )


def test_dataset_without_usable_texts(instance, resources, tmp_path):
    path = tmp_path / "blank.csv"
    path.write_text("text\n\n   \n\t\n")
    instance.add_dynamic_partitions(datasets.name, ["blank"])
    result = materialize(instance, resources, PREPARE, "blank", path)
    assert not result.success
    assert "has no usable texts" in failure_message(result)


def test_k_larger_than_the_dataset_and_unknown_k(instance, resources, tmp_path):
    path = tmp_path / "tiny.csv"
    pd.DataFrame({"text": ["one text", "another text", "a third"]}).to_csv(path, index=False)
    instance.add_dynamic_partitions(datasets.name, ["tiny"])
    assert materialize(instance, resources, PREPARE, "tiny", path).success
    result = materialize(instance, resources, PER_K, dg.MultiPartitionKey({"dataset": "tiny", "k": "5"}))
    assert not result.success and "K=5 is larger than the 3 texts" in failure_message(result)
    with pytest.raises(dg.DagsterUnknownPartitionError, match="Could not find a partition with key `tiny|99`"):
        materialize(instance, resources, PER_K, dg.MultiPartitionKey({"dataset": "tiny", "k": "99"}))


def test_provider_without_key_then_fixed_reuses_the_cache(instance, resources, tmp_path, monkeypatch, engine, stub):
    path = tmp_path / "data.csv"
    pd.DataFrame({"text": [f"text number {i}" for i in range(20)]}).to_csv(path, index=False)
    instance.add_dynamic_partitions(datasets.name, ["keyed"])
    assert materialize(instance, resources, PREPARE, "keyed", path).success
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM embedding_vectors")).scalar_one()
    requests = stub.stats.requests_total
    assert before == 20  # the first run stored every vector ...
    assert requests > 0 and stub.stats.snapshot()["embedding_texts_unique"] == 20  # ... through the API

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    keyless = {**resources, "embedder": EmbedderResource(provider="openai", model="stub-embedding", base_url=stub.base_url)}
    result = materialize(instance, keyless, PREPARE, "keyed")
    assert not result.success and "needs OPENAI_API_KEY" in failure_message(result)
    assert stub.stats.requests_total == requests  # failed before any request

    result = materialize(instance, resources, PREPARE, "keyed")  # the fix: the configured provider again
    assert result.success and stub.stats.requests_total == requests  # all from the cache
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM embedding_vectors")).scalar_one() == before


def test_demo_with_k_outside_the_partitions_fails_in_one_line(cli, db_env, tmp_path):
    result = cli(["demo", "--k-min", "1", "--k-max", "5"], {**db_env, "STUDYLLM_HOME": str(tmp_path / "home")})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "error: K must lie in [2, 30] with k_min <= k_max; got [1, 5]: choose --k-min and --k-max within it"
    ]
