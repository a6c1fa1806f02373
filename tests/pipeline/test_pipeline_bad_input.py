"""Bad input fails the run with a clear message in the event log; stored data survives, and the fix re-runs cheaply."""

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import text

from studyllm_pipeline.definitions import SWEEP_ASSETS
from studyllm_pipeline.jobs import PREPARE, SWEEP, sweep_run_config
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.resources import EmbedderResource


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = result.get_step_failure_events()
    assert failures, "the run was expected to fail"
    return " ".join(f.event_specific_data.error.message for f in failures)


def materialize(instance, resources, selection, key, path=None, config=None):
    if path:
        config = {"ops": {"dataset_snapshot": {"config": {"source_path": str(path)}}}}
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


def test_k_larger_than_the_dataset_fails_at_once_and_the_next_good_run_recovers(instance, resources, tmp_path, stub):
    path = tmp_path / "tiny.csv"
    pd.DataFrame({"text": ["one text", "another text", "a third", "a fourth one"]}).to_csv(path, index=False)
    instance.add_dynamic_partitions(datasets.name, ["tiny"])
    assert materialize(instance, resources, PREPARE, "tiny", path).success
    requests = stub.stats.requests_total
    result = materialize(instance, resources, SWEEP, "tiny", config=sweep_run_config(2, 5))
    assert not result.success
    assert failure_message(result).strip().endswith("Failure: k_max=5 exceeds the 4 usable texts: use k_max <= 4")
    assert stub.stats.requests_total == requests  # refused before any call
    assert not instance.get_latest_materialization_event(dg.AssetKey("clusters"))
    fixed = materialize(instance, resources, SWEEP, "tiny", config=sweep_run_config(2, 3))
    assert fixed.success and sorted(fixed.asset_value("sweep_report")["k"]) == [2, 3]
    with pytest.raises(dg.DagsterUnknownPartitionError, match="Could not find a partition with key `nosuch`"):
        materialize(instance, resources, SWEEP, "nosuch", config=sweep_run_config(2, 3))


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


@pytest.mark.parametrize(
    ("k_range", "message"),
    [
        (("1", "5"), "error: K must be a range with 2 <= k_min <= k_max; got k_min=1, k_max=5"),
        (("2", "451"), "error: k_max=451 exceeds the 450 texts of the demo corpus: use k_max <= 450"),
    ],
)
def test_demo_with_k_outside_the_dataset_fails_in_one_line(cli, db_env, tmp_path, k_range, message):
    result = cli(["demo", "--k-min", k_range[0], "--k-max", k_range[1]], {**db_env, "STUDYLLM_HOME": str(tmp_path / "home")})
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [message]
