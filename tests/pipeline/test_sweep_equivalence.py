"""One recipe: the same texts and settings through `studyllm sweep` and through the Dagster graph give
the same labels, scores, cluster summaries and best K (each with its own defaults left alone)."""

import json

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from studyllm_core.config import get_settings
from studyllm_core.services.sweep.result_store import SweepResults
from studyllm_pipeline.definitions import SWEEP_ASSETS
from studyllm_pipeline.jobs import PREPARE
from studyllm_pipeline.partitions import datasets
from support import TEST_API_KEY, sweep_ks, sweep_run_config, topic_corpus

SCORES = ("score", "silhouette", "stability_ari", "coverage", "dispersion", "acc", "nmi", "ari")


@pytest.mark.parametrize("method, summaries", [
    pytest.param({}, True, id="kmeans"),
    pytest.param({"method": "ksubspaces", "rank": 1}, True, id="ksubspaces"),  # with summaries, like k-LLMmeans
    pytest.param({}, False, id="kmeans-no-summaries"),  # plain k-means: the second pass runs in both
])
def test_cli_sweep_and_dagster_graph_agree(cli, instance, resources, pipeline_env, stub, tmp_path, method, summaries):
    texts, labels = topic_corpus(per_topic=15)
    path = tmp_path / "topics.csv"
    pd.DataFrame({"text": texts, "label": labels}).to_csv(path, index=False)

    out = tmp_path / "cli"
    result = cli(
        ["sweep", str(path), "--label-column", "label", "--embed-provider", "openai-compatible", "--embed-model",
         "stub-embedding", "--base-url", stub.base_url, *(["--summarizer", "extractive"] if summaries else []),
         "--k-min", "2", "--k-max", "5",
         "--out", str(out), "--json", *[f"--{key}={value}" for key, value in method.items()]],
        {**pipeline_env, "OPENAI_COMPATIBLE_API_KEY": TEST_API_KEY},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())

    instance.add_dynamic_partitions(datasets.name, ["topics"])
    source = {"ops": {"dataset_snapshot": {"config": {"source_path": str(path), "label_column": "label"}}}}
    assert dg.materialize(SWEEP_ASSETS, selection=PREPARE, partition_key="topics", instance=instance,
                          resources=resources, run_config=source).success
    settings = {**method, **({} if summaries else {"llm_rounds": 0})}
    config = sweep_run_config(**settings) if settings else None  # else the step's defaults, as the CLI's
    swept = sweep_ks(instance, resources, "topics", range(2, 6), run_config=config)
    assert swept.success
    logged = [e.message for e in instance.all_logs(swept.run_id) if e.user_message]
    second_pass = [m for m in logged if "second pass" in m]
    assert len(second_pass) == 1 and ("not run" in second_pass[0]) == summaries, second_pass
    assert (report["choice"]["second_pass"]["skipped"] is None) != summaries  # the CLI's pass, as the step's
    report_run = dg.materialize(SWEEP_ASSETS, selection=["sweep_report"], partition_key="topics", instance=instance,
                                resources=resources)
    stored = SweepResults(resources["database"].engine(), get_settings().artifacts_dir)
    metrics = report_run.asset_value("sweep_report").set_index("k")

    assert report["config"]["method"] == ("ksubspaces" if method else "kllmmeans")
    assert (report["counts"]["summarize_calls"] > 0) == summaries
    assert int(metrics.index[metrics["best"]][0]) == report["best_k"]
    for entry in report["per_k"]:
        k = entry["k"]
        clusters = stored.artifacts.read(stored.artifacts.path_for("clusters", "topics", str(k), suffix=".parquet"))
        dagster_labels = clusters.sort_values("row")["label"].to_numpy()
        np.testing.assert_array_equal(dagster_labels, np.load(out / f"labels_k{k}.npy"))
        for name in SCORES:
            cli_value = entry["label_metrics"][name] if name in ("acc", "nmi", "ari") else entry.get(name)
            if name == "stability_ari":
                cli_value = entry["stability"]["mean_ari"]
            assert metrics.loc[k, name] == pytest.approx(cli_value, rel=1e-9, abs=1e-12), (k, name)
        assert stored.summaries("topics", k)["summary"].tolist() == (entry["summaries"] or [None] * k)


def test_pipeline_defaults_are_the_cli_defaults():
    from studyllm_core.algorithms import SweepConfig
    from studyllm_core.cli import sweep as cli_sweep
    from studyllm_pipeline.assets.clustering import SweepSettings
    from studyllm_core.services.sweep.projection import DEFAULT_DIM

    assert DEFAULT_DIM == cli_sweep.DEFAULT_PCA_DIM
    settings = SweepSettings().sweep_config()
    assert (settings.n_restarts, settings.llm_rounds, settings.seed) == (cli_sweep.DEFAULT_RESTARTS, cli_sweep.DEFAULT_LLM_ROUNDS, 0)
    assert settings == SweepConfig()  # every setting the step has is SweepConfig's default (K comes from the partitions)
    # breathing k-means is set from the run config as from --breathing-depth
    assert SweepSettings(breathing_depth=3).sweep_config().breathing_depth == 3
    assert SweepSettings(breathing=False).sweep_config().breathing is False
