"""The study loop: a prompt run over three models (two answer alike, one differently) becomes a dataset that the
automation prepares, sweeps and compares; the comparison, in the UI and from the CLI, tells the models apart."""

import json

import dagster as dg
import pytest

from studyllm_core.services.datasets import DatasetRegistry, DatasetSource
from studyllm_core.services.provenance import ProvenanceService
from studyllm_pipeline.assets.comparison import study_comparison
from studyllm_pipeline.assets.prompts import prompt_run
from studyllm_pipeline.definitions import SWEEP_ASSETS, defs
from studyllm_pipeline.jobs import PER_K, PREPARE
from studyllm_pipeline.partitions import RANGE_END_TAG, RANGE_START_TAG, datasets
from studyllm_pipeline.resources import EmbedderResource, SummarizerResource
from studyllm_pipeline.sensors import replies_to_prepare, replies_to_sweep
from support import STUB_TOPICS, topic_corpus

ASSETS = [prompt_run, *SWEEP_ASSETS, study_comparison]


@pytest.mark.slow
def test_replies_are_prepared_swept_and_compared_by_automation(instance, resources, pipeline_env, stub, tmp_path,
                                                               monkeypatch, cli):
    texts, labels = topic_corpus(per_topic=10)
    by_topic = {t: [x for x, label in zip(texts, labels) if label == t] for t in STUB_TOPICS}
    # alpha and gamma answer each prompt with the same cooking text; beta answers with an astronomy text.
    stub.faults.set(replies={"alpha": by_topic["cooking"], "gamma": by_topic["cooking"], "beta": by_topic["astronomy"]})
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"Question {i}: what would you say?\n" for i in range(10)))
    monkeypatch.setenv("STUDYLLM_SWEEP_K_MAX", "4")
    instance.add_dynamic_partitions(datasets.name, ["study"])
    run_config = {"ops": {"prompt_run": {"config": {
        "prompts_path": str(prompts), "provider": "openai-compatible", "model": "alpha", "other_models": ["gamma", "beta"],
        "base_url": stub.base_url}}}}
    run = dg.materialize(ASSETS, selection=["prompt_run"], partition_key="study", instance=instance, resources=resources,
                         run_config=run_config)
    assert run.success and sorted(run.output_for_node("prompt_run")["model"].unique()) == ["alpha", "beta", "gamma"]

    # prompt_run -> prepare (replies_to_prepare) -> sweep (replies_to_sweep), each asked for by its sensor.
    [prepare] = list(replies_to_prepare(dg.build_sensor_context(instance=instance, definitions=defs)))
    assert dg.materialize(ASSETS, selection=PREPARE, partition_key=prepare.partition_key, instance=instance,
                          resources=resources).success
    with dg.build_sensor_context(instance=instance, resources=resources) as context:  # resources that own services
        swept = replies_to_sweep(context)
    [sweep] = swept.run_requests
    assert (sweep.tags[RANGE_START_TAG], sweep.tags[RANGE_END_TAG]) == ("study|2", "study|4")  # 30 replies, K max 4
    assert sweep.run_config == {"ops": {"sweep": {"config": {"llm_rounds": 0}}}}  # the stub embedder is not free
    with dg.build_sensor_context(instance=instance, resources=resources, cursor=swept.cursor) as context:
        assert isinstance(replies_to_sweep(context), dg.SkipReason)  # one sweep per prepared dataset
    # The report, then the comparison, follow on their own (report_automation's conditions, evaluated by its
    # sensor on every tick: the first evaluation here is the tick before the sweep).
    automated = dg.Definitions(assets=[*SWEEP_ASSETS, study_comparison], resources=resources)
    before = dg.evaluate_automation_conditions(defs=automated, instance=instance)
    assert before.total_requested == 0
    assert dg.materialize(ASSETS, selection=PER_K, instance=instance, resources=resources, tags=sweep.tags,
                          run_config=sweep.run_config).success
    first = dg.evaluate_automation_conditions(defs=automated, instance=instance, cursor=before.cursor)
    # One tick asks for both (a dependency requested in the same tick counts as updated): one run, report first.
    assert {key.to_user_string(): first.get_requested_partitions(key) for key in
            (dg.AssetKey("sweep_report"), dg.AssetKey("study_comparison"))} == {"sweep_report": {"study"},
                                                                                 "study_comparison": {"study"}}
    assert first.total_requested == 2  # nothing that spends money starts on its own
    result = dg.materialize(ASSETS, selection=["sweep_report", "study_comparison"], partition_key="study",
                            instance=instance, resources=resources)
    assert dg.evaluate_automation_conditions(defs=automated, instance=instance, cursor=first.cursor).total_requested == 0
    [materialization] = result.asset_materializations_for_node("study_comparison")
    metadata = materialization.metadata
    assert metadata["max_js_divergence"].value > 0.9 and metadata["chi_square_p"].value < 0.01
    pairs = {(r.data["model_a"], r.data["model_b"]): r.data["js_divergence"] for r in metadata["divergence"].records}
    assert pairs[("openai-compatible:alpha", "openai-compatible:gamma")] < 0.05  # alike
    assert pairs[("openai-compatible:alpha", "openai-compatible:beta")] > 0.9  # different
    assert [c.name for c in metadata["shares"].schema.columns] == ["provider", "model", "cluster", "replies", "share"]
    assert "answer differently" in metadata["divergence"].records[0].data["reading"]
    assert metadata["shares_chart"].value.startswith("![")
    # Its provenance: a record of this run, read from the sweep report it follows, and its check passes.
    [check] = [c for c in result.get_asset_check_evaluations() if c.asset_key == dg.AssetKey("study_comparison")]
    assert check.check_name == "provenance_links" and check.passed, check.description
    [record] = ProvenanceService(resources["database"].engine()).history("study_comparison", "study")
    assert record.run_id == result.run_id and [i["group"] for i in record.inputs] == ["sweep_report[study]"]

    # The same comparison from the CLI; a dataset that is not replies gets one line, not a traceback.
    shown = cli(["compare", "study", "--json"], pipeline_env)
    assert shown.returncode == 0, shown.stderr
    payload = json.loads(shown.stdout)
    assert payload["k"] == metadata["k"].value and len(payload["prompts"]) == 10
    (tmp_path / "notes.csv").write_text("text\na\nb\n")
    DatasetRegistry(resources["database"].engine()).register(DatasetSource(name="notes", path=str(tmp_path / "notes.csv")))
    refused = cli(["compare", "notes"], pipeline_env)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == ("error: dataset 'notes' is a file dataset, not the replies of a prompt run: it has "
                                      "no provider, model or prompt to compare (run prompts with prompt_run to make one)")
    instance.add_dynamic_partitions(datasets.name, ["notes"])
    note = dg.materialize(ASSETS, selection=["study_comparison"], partition_key="notes", instance=instance,
                          resources=resources).asset_materializations_for_node("study_comparison")[0]
    assert "not the replies of a prompt run" in note.metadata["comparison"].value


def test_only_reply_datasets_with_enough_replies_are_swept_on_their_own(instance, resources, tmp_path, monkeypatch):
    """A prepared file dataset is left to the user (its sweep may be large or paid for); a reply dataset is swept
    over K_MIN..min(K_MAX, replies / 2), for free: summary rounds only with the offline summariser and embedder."""
    monkeypatch.setenv("STUDYLLM_SWEEP_K_MAX", "6")
    registry = DatasetRegistry(resources["database"].engine())
    (tmp_path / "notes.csv").write_text("text\n" + "".join(f"note {i}\n" for i in range(40)))
    registry.register(DatasetSource(name="notes", path=str(tmp_path / "notes.csv")))
    for name, group in (("few", None), ("many", None)):
        registry.register(DatasetSource(name=name, kind="prompt_run", prompt_group_id=group))
    registry.groups.ensure_group("dataset", "few", metadata={"usable_texts": 3})  # K 2 needs 4 replies
    registry.groups.ensure_group("dataset", "many", metadata={"usable_texts": 9})
    registry.groups.ensure_group("dataset", "notes", metadata={"usable_texts": 40})
    for name in ("notes", "few", "many"):
        instance.report_runless_asset_event(dg.AssetMaterialization("pca_basis", partition=name))
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        result = replies_to_sweep(context)
    assert [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in result.run_requests] == [("many|2", "many|4")]
    offline = {**resources, "embedder": EmbedderResource(provider="local"), "summarizer": SummarizerResource(spec="extractive")}
    instance.report_runless_asset_event(dg.AssetMaterialization("pca_basis", partition="many"))
    with dg.build_sensor_context(instance=instance, resources=offline, cursor=result.cursor) as context:
        [request] = replies_to_sweep(context).run_requests
    assert request.run_config == {}  # k-LLMmeans with its default summary rounds: they cost nothing here
