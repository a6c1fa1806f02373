"""The sensor, the schedule and the definitions as Dagster loads them."""

import datetime
import json

import dagster as dg

from studyllm_core.services.datasets import DatasetRegistry, DatasetSource
from studyllm_pipeline.definitions import defs
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.schedules import nightly_sweep
from studyllm_pipeline.sensors import new_dataset_files
from studyllm_pipeline.resources import StudyllmDatabase


def test_definitions_load_with_every_asset_job_schedule_and_sensor():
    graph = defs.resolve_asset_graph()
    names = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"dataset_snapshot", "embeddings", "pca_projection", "clusters", "cluster_summaries", "cluster_metrics",
            "sweep_report", "prompt_run", "provider_comparison", "calls_over_time", "failure_rates"} <= names
    assert {"prepare_dataset", "sweep_dataset", "prepare_and_sweep"} <= {j.name for j in defs.resolve_all_job_defs()}
    assert defs.resolve_schedule_def("nightly_sweep") and defs.resolve_sensor_def("new_dataset_files")
    for sensor in ("report_automation", "report_after_failed_sweep", "report_after_cancelled_sweep"):
        assert defs.resolve_sensor_def(sensor).default_status == dg.DefaultSensorStatus.RUNNING
    # Every run, however launched (the UI's implicit asset job too), runs its steps in its own process.
    for job in defs.resolve_all_job_defs():
        assert job.executor_def.name == "in_process", job.name
    # Assets that spend money never run on their own.
    for key in ("embeddings", "clusters", "cluster_summaries", "prompt_run"):
        assert graph.get(dg.AssetKey(key)).automation_condition is None


def test_sensor_registers_new_files_once(instance, pipeline_env, tmp_path, monkeypatch):
    folder = tmp_path / "watched"
    folder.mkdir()
    monkeypatch.setenv("STUDYLLM_WATCH_DIR", str(folder))
    (folder / "My Survey.csv").write_text("text\nhello\nworld\n")
    (folder / "labelled.tsv").write_text("label\ttext\ngreeting\thello\nplace\tworld\n")
    (folder / "broken.jsonl").write_text("{not json\n")
    (folder / "notes.md").write_text("not a dataset")
    resources = {"database": StudyllmDatabase()}

    context = dg.build_sensor_context(instance=instance, resources=resources)
    result = new_dataset_files(context)
    names = ["My-Survey", "broken", "labelled"]
    assert [r.partition_key for r in result.run_requests] == names
    assert result.dynamic_partitions_requests[0].partition_keys == names
    # A `label` column becomes the reference labels; a file whose header cannot be read is still
    # registered (its prepare run reports the problem).
    registry = DatasetRegistry(resources["database"].engine())
    assert [registry.get(n).label_column for n in names] == [None, None, "label"]
    assert registry.load(registry.get("labelled")).labels == ["greeting", "place"]

    again = dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor)
    assert isinstance(new_dataset_files(again), dg.SkipReason)
    assert "My Survey.csv" in json.loads(result.cursor)


def test_schedule_requests_one_run_per_dataset_with_its_k_range(instance, pipeline_env, monkeypatch, tmp_path):
    monkeypatch.setenv("STUDYLLM_SWEEP_K_MIN", "3")
    monkeypatch.setenv("STUDYLLM_SWEEP_K_MAX", "5")
    resources = {"database": StudyllmDatabase()}
    when = datetime.datetime(2026, 11, 26, 3)
    registry = DatasetRegistry(resources["database"].engine())
    for name, n in (("a", 10), ("b", 4), ("c", 2)):  # b has 4 texts: K 3..4; c has 2: no K fits
        path = tmp_path / f"{name}.csv"
        path.write_text("text\n" + "".join(f"text {i} of {name}\n" for i in range(n)))
        registry.register(DatasetSource(name=name, path=str(path)))
        registry.load(registry.get(name))
    with dg.build_schedule_context(instance=instance, resources=resources, scheduled_execution_time=when) as context:
        assert isinstance(nightly_sweep(context), dg.SkipReason)  # no dataset partition yet
        instance.add_dynamic_partitions(datasets.name, ["a", "b", "c"])
        requests = nightly_sweep(context)
    ranges = {r.partition_key: r.run_config["ops"]["sweep"]["config"] for r in requests}
    assert ranges == {"a": {"k_min": 3, "k_max": 5}, "b": {"k_min": 3, "k_max": 4}}
    assert len({r.run_key for r in requests}) == 2


def test_report_follows_new_k_results_on_its_own(instance, resources, tmp_path):
    import pandas as pd

    from studyllm_pipeline.definitions import SWEEP_ASSETS
    from studyllm_pipeline.jobs import PREPARE, SWEEP, sweep_run_config

    path = tmp_path / "d.csv"
    pd.DataFrame({"text": [f"text {i} about {['cats', 'stars', 'bread'][i % 3]}" for i in range(30)]}).to_csv(path, index=False)
    instance.add_dynamic_partitions(datasets.name, ["auto", "empty"])
    config = {"ops": {"dataset_snapshot": {"config": {"source_path": str(path)}}}}
    assert dg.materialize(SWEEP_ASSETS, selection=PREPARE, partition_key="auto", instance=instance, resources=resources, run_config=config).success

    defs = dg.Definitions(assets=SWEEP_ASSETS, resources=resources)
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0  # nothing clustered yet: no report to make, for either dataset
    sweep_only = [name for name in SWEEP if name != "sweep_report"]  # the sweep step alone, as a UI user may run it
    assert dg.materialize(
        SWEEP_ASSETS, selection=sweep_only, partition_key="auto", instance=instance, resources=resources,
        run_config=sweep_run_config(2, 3),
    ).success
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.get_requested_partitions(dg.AssetKey("sweep_report")) == {"auto"}
    assert second.total_requested == 1  # the report only: nothing that spends money starts on its own

    # A sweep run that made its report too leaves nothing for the automation to do.
    assert dg.materialize(
        SWEEP_ASSETS, selection=SWEEP, partition_key="auto", instance=instance, resources=resources,
        run_config=sweep_run_config(2, 3),
    ).success
    third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
    assert third.total_requested == 0
