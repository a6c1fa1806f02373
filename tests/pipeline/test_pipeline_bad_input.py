"""Bad input fails the run with a clear message in the event log; stored data survives, and the fix re-runs cheaply."""

import threading
import time

import dagster as dg
import pandas as pd
import pytest
from sqlalchemy import text

from studyllm_pipeline.definitions import SWEEP_ASSETS
from studyllm_pipeline.jobs import PREPARE
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.resources import EmbedderResource, SummarizerResource
from support import sweep_ks, sweep_run_config


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


def test_k_larger_than_the_dataset_is_refused_and_never_turns_red(instance, resources, tmp_path, stub):
    """A K partition beyond the dataset's texts (added by hand in the UI) is refused and reported, the
    other K of the run are clustered, the run succeeds and nothing is left failed."""
    path = tmp_path / "tiny.csv"
    pd.DataFrame({"text": ["one text", "another text", "a third", "a fourth one"]}).to_csv(path, index=False)
    instance.add_dynamic_partitions(datasets.name, ["tiny"])
    assert materialize(instance, resources, PREPARE, "tiny", path).success
    result = sweep_ks(instance, resources, "tiny", [3, 4, 5], raise_on_error=False)
    assert result.success
    assert {e.partition for e in result.asset_materializations_for_node("sweep")} == {"tiny|3", "tiny|4"}
    assert any(e.user_message == "tiny: K=5 exceeds the 4 usable texts: not clustered" for e in instance.all_logs(result.run_id))
    report = materialize(instance, resources, ["sweep_report"], "tiny")
    assert report.asset_value("sweep_report")["status"].tolist() == ["done", "done", "refused"]
    check = next(c for c in report.get_asset_check_evaluations() if c.check_name == "requested_k_done")
    assert not check.passed and check.description == "K=5 refused: K=5 exceeds the 4 usable texts"
    runs = instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
    assert runs == []  # nothing failed: no red partition


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


def test_a_k_that_fails_mid_sweep_keeps_the_done_k_and_the_report_names_the_rest(instance, resources, tmp_path, stub):
    path = tmp_path / "topics.csv"
    texts = [f"{topic} note {i}" for topic in ("stars", "bread", "trains") for i in range(8)]
    pd.DataFrame({"text": texts}).to_csv(path, index=False)
    instance.add_dynamic_partitions(datasets.name, ["mid"])
    assert materialize(instance, resources, PREPARE, "mid", path).success
    chat = {**resources, "summarizer": SummarizerResource(spec="openai-compatible:stub-chat", base_url=stub.base_url)}
    config = sweep_run_config(llm_rounds=1)
    automation_defs = dg.Definitions(assets=SWEEP_ASSETS, resources=chat)
    before = dg.evaluate_automation_conditions(defs=automation_defs, instance=instance)  # the sensor's earlier tick

    # The summariser goes away once K=2's two summary calls arrived (the server answers each after
    # 0.3 s, with the settings it had on arrival): K=3's calls get 404 unknown model.
    stub.faults.set(latency_s=0.3)
    watcher = threading.Thread(target=lambda: _when(lambda: stub.stats.snapshot()["requests_by_endpoint"].get("chat", 0) >= 2,
                                                    lambda: stub.faults.set(known_models=["stub-embedding"])))
    watcher.start()
    failed = sweep_ks(instance, chat, "mid", [2, 3, 4], config, raise_on_error=False)
    watcher.join()
    assert not failed.success
    assert "K=3 failed: " in failure_message(failed) and "; K 4 not run; the done K are stored" in failure_message(failed)
    assert {e.partition for e in failed.asset_materializations_for_node("sweep")} == {"mid|2"}
    assert instance.get_materialized_partitions(dg.AssetKey("cluster_metrics")) == {"mid|2"}

    automation = dg.evaluate_automation_conditions(defs=automation_defs, instance=instance, cursor=before.cursor)
    assert automation.get_requested_partitions(dg.AssetKey("sweep_report")) == {"mid"}  # the report follows on its own
    report = materialize(instance, chat, ["sweep_report"], "mid")  # the run the automation requests
    assert report.success and report.asset_value("sweep_report")["status"].tolist() == ["done", "failed", "not run"]
    check = next(c for c in report.get_asset_check_evaluations() if c.check_name == "requested_k_done")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert check.description.startswith("K=3 failed: ") and check.description.endswith(
        "; K 4 missing (not run); only 1 K done: a choice of K needs at least two to compare")

    stub.faults.reset()  # the provider is back: the next run recovers the missing K
    fixed = sweep_ks(instance, chat, "mid", [3, 4], config)
    assert fixed.success and instance.get_materialized_partitions(dg.AssetKey("cluster_metrics")) == {"mid|2", "mid|3", "mid|4"}
    report = materialize(instance, chat, ["sweep_report"], "mid")
    assert set(report.asset_value("sweep_report")["status"]) == {"done"}
    assert all(c.passed for c in report.get_asset_check_evaluations())


def _when(condition, action, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    action()
