"""prompt_run from the Launchpad: replies are recorded and become a dataset the sweep can use."""

import dagster as dg

from studyllm_core.db.groups import GroupRepository
from studyllm_core.services.provenance import ProvenanceService
from studyllm_pipeline.assets.prompts import prompt_run
from studyllm_pipeline.definitions import SWEEP_ASSETS
from studyllm_pipeline.partitions import datasets


def test_prompt_run_registers_its_replies_as_a_dataset(instance, resources, stub, tmp_path, engine):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is a comet?\nName a prime number.\n")
    config = {"ops": {"prompt_run": {"config": {
        "prompts_path": str(prompts), "provider": "openai-compatible", "model": "stub-chat",
        "base_url": stub.base_url, "samples": 2, "dataset_name": "replies-test",
    }}}}
    result = dg.materialize([prompt_run, *SWEEP_ASSETS], selection=["prompt_run"], instance=instance, resources=resources, run_config=config)
    assert result.success
    table = result.output_for_node("prompt_run")
    assert len(table) == 4 and table["reply"].notna().all()
    assert "replies-test" in instance.get_dynamic_partitions(datasets.name)

    groups = GroupRepository(engine)
    dataset = groups.lookup("dataset", "replies-test")
    calls_group = ProvenanceService(engine).inputs_of(dataset.id)[0]
    assert len(groups.member_ids(calls_group.id)) == 4
    assert [link.child_group_id for link in groups.children(groups.lookup("prompt_run", "prompt_run").id, "contains")] == [calls_group.id]

    snapshot = dg.materialize(SWEEP_ASSETS, selection=["dataset_snapshot"], partition_key="replies-test", instance=instance, resources=resources)
    assert len(snapshot.output_for_node("dataset_snapshot")) == 4
