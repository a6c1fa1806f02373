"""The sensor, the schedule and the definitions as Dagster loads them."""

import datetime
import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from studyllm_core.config import sensor_interval_s, sweep_ks_per_run
from studyllm_core.errors import ConfigError
from studyllm_core.services.datasets import DatasetRegistry, DatasetSource
from studyllm_pipeline.definitions import defs
from studyllm_pipeline.partitions import contiguous_ranges, datasets, sweep_backfill_policy
from studyllm_pipeline.schedules import nightly_sweep
from studyllm_pipeline.sensors import new_dataset_files
from studyllm_pipeline.resources import StudyllmDatabase


def test_definitions_load_with_every_asset_job_schedule_and_sensor():
    graph = defs.resolve_asset_graph()
    names = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {"dataset_snapshot", "embeddings", "pca_projection", "clusters", "cluster_summaries", "cluster_metrics",
            "sweep_report", "prompt_run", "provider_comparison", "calls_over_time", "failure_rates"} <= names
    assert {"prepare_dataset", "sweep_k", "sweep_report_job"} <= {j.name for j in defs.resolve_all_job_defs()}
    assert defs.resolve_schedule_def("nightly_sweep") and defs.resolve_sensor_def("new_dataset_files")
    assert defs.resolve_sensor_def("report_automation").default_status == dg.DefaultSensorStatus.RUNNING
    # A backfill of a K range is one run (the per-K step's single-run policy).
    assert graph.get(dg.AssetKey("clusters")).backfill_policy == dg.BackfillPolicy.single_run()
    # Every run, however launched (the UI's implicit asset job too), runs its steps in its own process.
    for job in defs.resolve_all_job_defs():
        assert job.executor_def.name == "in_process", job.name
    # Assets that spend money never run on their own.
    for key in ("embeddings", "clusters", "cluster_summaries", "prompt_run"):
        assert graph.get(dg.AssetKey(key)).automation_condition is None


def test_sensors_and_report_automation_look_as_often_as_configured(monkeypatch):
    """STUDYLLM_SENSOR_INTERVAL_S, read when the code location loads (default 30 s), sets how often every
    sensor and the report automation look; a bad value is a one-line error naming the variable."""
    script = ("from studyllm_pipeline.definitions import defs\n"
              "names = ['new_dataset_files', 'replies_to_prepare', 'replies_to_sweep', 'report_automation']\n"
              "print(*(defs.resolve_sensor_def(n).minimum_interval_seconds for n in names))\n")
    for value, expected in (("", "30 30 30 30"), ("5", "5 5 5 5")):
        env = {**os.environ, "STUDYLLM_SENSOR_INTERVAL_S": value}
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split("\n")[-2] == expected
    for bad in ("0", "fast", "2.5"):
        monkeypatch.setenv("STUDYLLM_SENSOR_INTERVAL_S", bad)
        with pytest.raises(ConfigError, match="STUDYLLM_SENSOR_INTERVAL_S must be a whole number of at least 1"):
            sensor_interval_s()


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
    ranges = {(r.tags["dagster/asset_partition_range_start"], r.tags["dagster/asset_partition_range_end"]) for r in requests}
    assert ranges == {("a|3", "a|5"), ("b|3", "b|4")}  # one run per dataset; K beyond its texts left out
    assert instance.get_dynamic_partitions("k") == ["3", "4", "5"]  # the K axis holds the requested K, in order

    # Past one machine: STUDYLLM_SWEEP_KS_PER_RUN=1 makes every (dataset, K) its own run, with the partition's
    # tags (so the run queue's per-partition and per-dataset limits count it), and a backfill of a K range
    # one run per partition.
    monkeypatch.setenv("STUDYLLM_SWEEP_KS_PER_RUN", "1")
    with dg.build_schedule_context(instance=instance, resources=resources, scheduled_execution_time=when) as context:
        requests = nightly_sweep(context)
    assert sorted(r.partition_key for r in requests) == ["a|3", "a|4", "a|5", "b|3", "b|4"]
    assert len({r.run_key for r in requests}) == 5
    assert sweep_backfill_policy() == dg.BackfillPolicy.multi_run(1)
    monkeypatch.setenv("STUDYLLM_SWEEP_KS_PER_RUN", "2")
    assert contiguous_ranges(["3", "4", "5", "7", "9"], [3, 4, 5, 9], sweep_ks_per_run()) == [[3, 4], [5], [9]]
    monkeypatch.setenv("STUDYLLM_SWEEP_KS_PER_RUN", "0")
    with pytest.raises(ConfigError, match="STUDYLLM_SWEEP_KS_PER_RUN must be a whole number of at least 1"):
        sweep_backfill_policy()


def test_report_follows_new_k_results_on_its_own(instance, resources, tmp_path):
    import pandas as pd

    from studyllm_pipeline.definitions import SWEEP_ASSETS
    from studyllm_pipeline.jobs import PREPARE
    from support import sweep_ks

    path = tmp_path / "d.csv"
    pd.DataFrame({"text": [f"text {i} about {['cats', 'stars', 'bread'][i % 3]}" for i in range(30)]}).to_csv(path, index=False)
    instance.add_dynamic_partitions(datasets.name, ["auto", "empty"])
    config = {"ops": {"dataset_snapshot": {"config": {"source_path": str(path)}}}}
    assert dg.materialize(SWEEP_ASSETS, selection=PREPARE, partition_key="auto", instance=instance, resources=resources, run_config=config).success

    defs = dg.Definitions(assets=SWEEP_ASSETS, resources=resources)
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert first.total_requested == 0  # nothing clustered yet: no report to make, for either dataset
    assert sweep_ks(instance, resources, "auto", [2, 3]).success
    second = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert second.get_requested_partitions(dg.AssetKey("sweep_report")) == {"auto"}
    assert second.total_requested == 1  # the report only: nothing that spends money starts on its own

    # Once the report is made, nothing is left for the automation to do.
    assert dg.materialize(SWEEP_ASSETS, selection=["sweep_report"], partition_key="auto", instance=instance,
                          resources=resources).success
    third = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=second.cursor)
    assert third.total_requested == 0

    # A report made and then a new K stored between the same two ticks (a report run that went ahead of a sweep
    # run): the K came after the report, so the report is asked for again, here and on a later tick alike.
    assert dg.materialize(SWEEP_ASSETS, selection=["sweep_report"], partition_key="auto", instance=instance,
                          resources=resources).success
    assert sweep_ks(instance, resources, "auto", [4]).success
    fourth = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=third.cursor)
    assert fourth.get_requested_partitions(dg.AssetKey("sweep_report")) == {"auto"}
    assert dg.materialize(SWEEP_ASSETS, selection=["sweep_report"], partition_key="auto", instance=instance,
                          resources=resources).success
    fifth = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=fourth.cursor)
    assert fifth.total_requested == 0

    # A report that fails is not asked for again on every tick: it waits for the next new K.
    class Down(StudyllmDatabase):
        def sweep_results(self):  # noqa: ANN202
            raise RuntimeError("the results store is down")

    assert sweep_ks(instance, resources, "auto", [5]).success
    assert not dg.materialize(SWEEP_ASSETS, selection=["sweep_report"], partition_key="auto", instance=instance,
                              resources={**resources, "database": Down()}, raise_on_error=False).success
    sixth = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=fifth.cursor)
    assert sixth.get_requested_partitions(dg.AssetKey("sweep_report")) == {"auto"}  # K=5 is new since the last tick
    seventh = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=sixth.cursor)
    assert seventh.total_requested == 0  # still stale, but its last run failed and nothing new came
    assert sweep_ks(instance, resources, "auto", [6]).success
    eighth = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=seventh.cursor)
    assert eighth.get_requested_partitions(dg.AssetKey("sweep_report")) == {"auto"}


def test_sensor_skips_a_bad_file_name_and_gives_distinct_files_distinct_names(instance, pipeline_env, tmp_path,
                                                                              monkeypatch, capfd):
    """`---.csv` (no letter or digit to name it by) is skipped with its reason logged; the files beside it are
    registered, and `a b.csv` / `a-b.csv` / `a-b.tsv` become three datasets, not one."""
    folder = tmp_path / "watched"
    folder.mkdir()
    monkeypatch.setenv("STUDYLLM_WATCH_DIR", str(folder))
    for name in ("---.csv", "a b.csv", "a-b.csv", "a-b.tsv", "fine.csv"):
        (folder / name).write_text(("text\t" if name.endswith("tsv") else "text\n") + f"text of {name}\n")
    resources = {"database": StudyllmDatabase()}
    context = dg.build_sensor_context(instance=instance, resources=resources)
    result = new_dataset_files(context)
    names = [r.partition_key for r in result.run_requests]
    assert len(names) == len(set(names)) == 4 and "fine" in names and "a-b" in names
    registry = DatasetRegistry(resources["database"].engine())
    paths = {registry.get(n).path for n in names}
    assert paths == {str((folder / f).resolve()) for f in ("a b.csv", "a-b.csv", "a-b.tsv", "fine.csv")}
    assert "skipped ---.csv: '---' gives an empty dataset name" in capfd.readouterr().err
    assert "---.csv" in json.loads(result.cursor)  # remembered: its reason is not logged again every tick
    # Evaluated again after a file changed, the names stay the same (no file takes another's name).
    (folder / "a-b.csv").write_text("text\nchanged\n")
    again = new_dataset_files(dg.build_sensor_context(instance=instance, resources=resources, cursor=result.cursor))
    [request] = again.run_requests
    assert registry.get(request.partition_key).path == str((folder / "a-b.csv").resolve())
    assert request.partition_key in names
