"""What the UI says about the definitions: every automation, job and check explains itself; assets
that may spend money have an owner and a tag; code references and consistent kinds; nothing in the
Launchpad can change the IO managers or carry an API key."""

import dagster as dg
import pytest

from studyllm_pipeline.definitions import defs
from studyllm_pipeline.resources import EmbedderResource, StudyllmDatabase

SPENDING = {"embeddings", "clusters", "cluster_summaries", "cluster_metrics", "prompt_run"}


def test_every_sensor_schedule_job_and_check_has_a_description():
    repo = defs.get_repository_def()
    described = [*repo.sensor_defs, *repo.schedule_defs, *repo.get_all_jobs()]
    assert all(d.description for d in described if not d.name.startswith("__")), [
        d.name for d in described if not d.description]
    assert "may spend money" in next(s for s in repo.schedule_defs if s.name == "nightly_sweep").description
    checks = [spec for assets_def in repo.assets_defs_by_key.values() for spec in assets_def.check_specs]
    assert len(checks) >= 12 and all(spec.description for spec in checks)


def test_assets_that_spend_money_have_an_owner_and_a_tag_and_every_asset_consistent_kinds_and_code():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node, name = graph.get(key), key.to_user_string()
        if not node.is_materializable:
            assert node.kinds == {"postgres"} and node.description, name  # studyllm's own tables
            continue
        spends = node.tags.get("cost") == "provider-api"
        assert spends == (name in SPENDING) and bool(node.owners) == spends, name
        assert "python" in node.kinds and len(node.kinds & {"parquet", "numpy"}) == 1, (name, node.kinds)
        [where] = node.metadata["dagster/code_references"].code_references  # the asset's own function, not a wrapper
        assert where.file_path.endswith(".py") and not where.file_path.endswith("common.py"), (name, where)


def test_launchpad_config_has_no_io_manager_settings_and_no_api_key():
    resources = defs.resolve_job_def("prepare_dataset").run_config_schema.config_type.fields["resources"].config_type
    fields = {name: list(f.config_type.fields["config"].config_type.fields) for name, f in resources.fields.items()
              if name != "io_manager"}
    assert fields["npy_io"] == fields["parquet_io"] == []
    assert "api_key" not in fields["embedder"] and "api_key_env" in fields["embedder"]


def test_an_api_key_can_only_be_named_never_given(monkeypatch, db_env):
    with pytest.raises(Exception, match="names an environment variable .* never the key itself"):
        EmbedderResource(provider="openai", api_key_env="sk-abcdef0123456789")
    embedder = EmbedderResource(provider="openai", model="text-embedding-3-small", api_key_env="STUDYLLM_TEST_KEY")
    monkeypatch.delenv("STUDYLLM_TEST_KEY", raising=False)
    with pytest.raises(Exception, match="^embedder.api_key_env names STUDYLLM_TEST_KEY, which is not set"):
        embedder.service(StudyllmDatabase().engine())


def test_lineage_is_whole():
    """prompt_run leads to the dataset it creates; the steps that call providers lead to raw_calls, which the
    analytics read; the embedding steps lead to the cache. No asset is an island."""
    graph = defs.resolve_asset_graph()

    def parents(name):
        return {k.to_user_string() for k in graph.get(dg.AssetKey(name)).parent_keys}

    assert "prompt_run" in parents("dataset_snapshot")
    assert graph.get(dg.AssetKey("prompt_run")).partitions_def == graph.get(dg.AssetKey("dataset_snapshot")).partitions_def
    assert parents("raw_calls") == {"prompt_run", "embeddings", "cluster_summaries"}
    assert parents("embedding_cache") == {"embeddings", "clusters"}
    for name in ("provider_comparison", "calls_over_time", "failure_rates", "usage_summary", "recent_calls"):
        assert parents(name) == {"raw_calls"}, name
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.parent_keys or node.child_keys, key


def test_no_asset_value_is_pickled():
    """Every asset value goes to a file the core records (NPY or Parquet through npy_io / parquet_io); the
    per-K tables, stored by the core as they are done, are reported by materialization events and never
    given to an IO manager (their outputs are skippable), so Dagster's default pickling IO manager stores nothing."""
    repo = defs.get_repository_def()
    for assets_def in set(repo.assets_defs_by_key.values()):
        if not assets_def.is_materializable:
            continue
        for key in assets_def.keys:
            io_key = assets_def.get_io_manager_key_for_asset_key(key)
            if io_key in ("npy_io", "parquet_io"):
                continue
            output = assets_def.op.output_def_named(assets_def.get_output_name_for_asset_key(key))
            assert not output.is_required and key.to_user_string() in {"clusters", "cluster_summaries", "cluster_metrics"}, (
                key, io_key)


def test_loading_the_code_location_leaves_scipy_stats_to_the_steps_that_use_it():
    """Every run process loads the definitions before its first step: a prepare run never needs scipy.stats
    (~0.7 s of imports), only study_comparison (and the sweep's scikit-learn metrics, when they run) do."""
    import subprocess
    import sys

    probe = "import sys, studyllm_pipeline.definitions; print(sorted(m for m in ('scipy.stats', 'sklearn') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
