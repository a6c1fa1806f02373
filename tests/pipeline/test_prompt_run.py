"""prompt_run from the Launchpad: replies are recorded and become the dataset its partition names,
which the snapshot reads with lineage from prompt_run; a file dataset's name is refused before any call."""

import dagster as dg

from studyllm_core.db.groups import GroupRepository
from studyllm_core.services.datasets import DatasetRegistry, DatasetSource
from studyllm_core.services.provenance import ProvenanceService
from studyllm_pipeline.assets.prompts import prompt_run
from studyllm_pipeline.definitions import SWEEP_ASSETS, defs
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.sensors import replies_to_prepare


def test_prompt_run_registers_its_replies_as_a_dataset(instance, resources, stub, tmp_path, engine):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is a comet?\nName a prime number.\n")
    config = {"ops": {"prompt_run": {"config": {
        "prompts_path": str(prompts), "provider": "openai-compatible", "model": "stub-chat",
        "base_url": stub.base_url, "samples": 2,
    }}}}
    instance.add_dynamic_partitions(datasets.name, ["replies-test"])
    result = dg.materialize([prompt_run, *SWEEP_ASSETS], selection=["prompt_run"], partition_key="replies-test",
                            instance=instance, resources=resources, run_config=config)
    assert result.success
    table = result.output_for_node("prompt_run")
    assert len(table) == 4 and table["reply"].notna().all()

    groups = GroupRepository(engine)
    dataset = groups.lookup("dataset", "replies-test")
    calls_group = ProvenanceService(engine).inputs_of(dataset.id)[0]
    assert len(groups.member_ids(calls_group.id)) == 4
    assert [link.child_group_id for link in groups.children(groups.lookup("prompt_run", "prompt_run[replies-test]").id, "contains")] == [calls_group.id]

    # The sensor that follows prompt runs asks for the replies' dataset to be prepared.
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    requests = list(replies_to_prepare(context))
    assert [r.partition_key for r in requests] == ["replies-test"] and replies_to_prepare.job_name == "prepare_dataset"
    snapshot = dg.materialize([prompt_run, *SWEEP_ASSETS], selection=["dataset_snapshot"], partition_key="replies-test", instance=instance, resources=resources)
    assert len(snapshot.output_for_node("dataset_snapshot")) == 4
    assert all(c.passed for c in snapshot.get_asset_check_evaluations())  # provenance_links: prompt_run[replies-test]
    inputs = {g.name for g in ProvenanceService(engine).inputs_of(groups.lookup("dataset", "dataset_snapshot[replies-test]").id)}
    assert inputs == {"prompt_run[replies-test]", "replies-test"}

    # A partition naming a file dataset is refused before any call is made.
    (tmp_path / "notes.csv").write_text("text\na\nb\n")
    DatasetRegistry(engine).register(DatasetSource(name="notes", path=str(tmp_path / "notes.csv")))
    instance.add_dynamic_partitions(datasets.name, ["notes"])
    requests = stub.stats.requests_total
    refused = dg.materialize([prompt_run, *SWEEP_ASSETS], selection=["prompt_run"], partition_key="notes",
                             instance=instance, resources=resources, run_config=config, raise_on_error=False)
    assert not refused.success and stub.stats.requests_total == requests
    failure = refused.get_step_failure_events()[0].step_failure_data.error.message
    assert "dataset 'notes' is a file dataset: add a new partition for the replies" in failure
