"""One sweep per (dataset, K) at a time, for every kind of run: a ranged run (what a single-run backfill
from the UI or the daemon launches: range tags only, no partition tag for the run queue to limit)
and a one-partition run of one of its K do not overlap; the second waits and says for which run;
a run of another K of the dataset, and a sweep of another dataset, do not wait."""

import threading

import dagster as dg
import pandas as pd
import pytest

from studyllm_core.services.sweep.result_store import SweepResults
from studyllm_pipeline.definitions import SWEEP_ASSETS
from studyllm_pipeline.jobs import PER_K, PREPARE
from studyllm_pipeline.partitions import datasets, k_values, new_k_values
from support import sweep_ks, sweep_run_config

SETTINGS = sweep_run_config(n_restarts=1, llm_rounds=0)
WHO = "test/who"


@pytest.fixture
def two_datasets(instance, resources, tmp_path):
    rows = [(topic, f"{topic} note {i}") for topic in ("stars", "bread", "trains") for i in range(6)]
    path = tmp_path / "tiny.csv"
    pd.DataFrame(rows, columns=["label", "text"]).to_csv(path, index=False)
    instance.add_dynamic_partitions(datasets.name, ["tiny", "other"])
    config = {"ops": {"dataset_snapshot": {"config": {"source_path": str(path), "label_column": "label"}}}}
    for name in ("tiny", "other"):
        assert dg.materialize(SWEEP_ASSETS, selection=PREPARE, partition_key=name, instance=instance,
                              resources=resources, run_config=config).success
    instance.add_dynamic_partitions(k_values.name, new_k_values(instance.get_dynamic_partitions(k_values.name), [2, 3, 4]))


def messages(instance, run_id: str) -> list[str]:
    return [e.user_message for e in instance.all_logs(run_id) if e.user_message]


def run_of(instance, who: str):
    runs = instance.get_runs(filters=dg.RunsFilter(tags={WHO: who}))
    return runs[0] if runs else None


def wait_until(predicate, what: str) -> None:
    import time

    deadline = time.monotonic() + 120
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_ranged_run_and_a_ui_run_of_one_dataset_never_overlap(instance, resources, two_datasets, monkeypatch):
    # The ranged run pauses right after storing its first K (while it holds the dataset), until released.
    paused, release = threading.Event(), threading.Event()
    save = SweepResults.save

    def save_then_pause(self, *args, **kwargs):
        scores = save(self, *args, **kwargs)
        if threading.current_thread().name == "ranged":
            paused.set()
            release.wait(120)
        return scores

    monkeypatch.setattr(SweepResults, "save", save_then_pause)
    outcomes = {}

    def in_thread(name: str, launch) -> threading.Thread:
        thread = threading.Thread(target=lambda: outcomes.__setitem__(name, launch()), name=name, daemon=True)
        thread.start()
        return thread

    ranged = in_thread("ranged", lambda: sweep_ks(instance, resources, "tiny", [2, 3], SETTINGS, tags={WHO: "ranged"}))
    assert paused.wait(120), "the ranged run never stored its first K"
    ranged_run = run_of(instance, "ranged")
    # What the UI launches for one (dataset, K) partition: dagster/partition tags, a K of the ranged run.
    single = in_thread("single", lambda: dg.materialize(
        SWEEP_ASSETS, selection=PER_K, partition_key="tiny|3", instance=instance, resources=resources,
        run_config=SETTINGS, tags={WHO: "single"}))
    def single_waits() -> bool:
        run = run_of(instance, "single")
        return bool(run) and any("waiting" in m for m in messages(instance, run.run_id))

    wait_until(lambda: single_waits() or not single.is_alive(), "the second run of the dataset never started")
    assert single_waits(), "the second run of the dataset did not wait for the first"
    single_run = run_of(instance, "single")
    waiting = next(m for m in messages(instance, single_run.run_id) if "waiting" in m)
    assert f"'tiny' K=3 is being swept by run {ranged_run.run_id}" in waiting

    # Another K of the same dataset (a cluster's per-K runs) and another dataset meanwhile: both run
    # to the end while the ranged run holds tiny's K 2 and 3, without waiting.
    apart = dg.materialize(SWEEP_ASSETS, selection=PER_K, partition_key="tiny|4", instance=instance,
                           resources=resources, run_config=SETTINGS, tags={WHO: "apart"})
    assert apart.success and not any("waiting" in m for m in messages(instance, apart.run_id))

    other = sweep_ks(instance, resources, "other", [2, 3], SETTINGS, tags={WHO: "other"})
    assert other.success and not any("waiting" in m for m in messages(instance, other.run_id))
    assert single.is_alive() and ranged.is_alive()

    release.set()
    ranged.join(120)
    single.join(120)
    assert outcomes["ranged"].success and outcomes["single"].success

    def materialized(run_id: str) -> list[float]:
        return [e.timestamp for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)]

    assert max(materialized(ranged_run.run_id)) <= min(materialized(single_run.run_id))
    assert any("'tiny' is free after" in m for m in messages(instance, single_run.run_id))
