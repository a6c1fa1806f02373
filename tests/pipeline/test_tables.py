"""Tables in the Dagster UI: real table metadata with described columns, rounded floats, ids as text,
and the column schema and row count of table assets; the analytics assets materialised on real calls."""

import dagster as dg
import numpy as np
import pandas as pd

from studyllm_pipeline.assets.analytics import ANALYTICS_ASSETS
from studyllm_pipeline.definitions import defs
from studyllm_pipeline.tables import as_table, table_asset_metadata


def test_a_frame_becomes_a_described_table_with_rounded_floats_and_ids_as_text():
    frame = pd.DataFrame({"id": [7, 8], "provider": ["openai", "local"], "p50_latency_ms": [14.293611999988798, np.nan],
                          "nmi": [0.123456, 0.9], "representatives": [["a", "b"], ["c"]], "mystery": [1234.5678, 0.000123456]})
    value = as_table(frame)
    assert isinstance(value, dg.TableMetadataValue)
    columns = {c.name: c for c in value.schema.columns}
    assert columns["p50_latency_ms"].type == "float" and columns["p50_latency_ms"].description == "median latency, milliseconds"
    assert columns["id"].type == "string" and columns["mystery"].description is None
    first, second = (record.data for record in value.records)
    assert first == {"id": "7", "provider": "openai", "p50_latency_ms": 14.3, "nmi": 0.123, "representatives": "a; b",
                     "mystery": 1235.0}
    assert second["p50_latency_ms"] is None and second["mystery"] == 0.0001235
    meta = table_asset_metadata(frame)
    assert meta["dagster/row_count"] == 2 and [c.name for c in meta["dagster/column_schema"].columns] == list(frame.columns)


def test_no_internal_definition_metadata_and_every_table_asset_has_descriptions():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert not any(k.startswith("studyllm/") for k in node.metadata), (key, node.metadata)
        assert node.description, key


def test_analytics_assets_materialise_on_real_calls(instance, resources, stub, tmp_path):
    """Calls recorded through the loopback server (one of them failed), then every analytics asset."""
    from studyllm_pipeline.assets.prompts import prompt_run

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is a comet?\nName a prime number.\n")
    stub.faults.fail_next(1, "bad_request", endpoint="chat")
    config = {"ops": {"prompt_run": {"config": {"prompts_path": str(prompts), "provider": "openai-compatible",
                                                "model": "stub-chat", "base_url": stub.base_url}}}}
    instance.add_dynamic_partitions("datasets", ["replies"])
    assert dg.materialize([prompt_run], partition_key="replies", instance=instance, resources=resources, run_config=config).success
    result = dg.materialize(ANALYTICS_ASSETS, instance=instance, resources=resources)
    assert result.success
    meta = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    comparison = meta["provider_comparison"]
    assert {c.name for c in comparison["table"].schema.columns} >= {"p50_latency_ms", "success_rate", "cost_usd"}
    assert comparison["dagster/row_count"].value == 1
    failures = meta["failure_rates"]["table"].records
    assert len(failures) == 1 and failures[0].data["example_message"]  # the message is there, never cut off
    assert meta["calls_over_time"]["dagster/row_count"].value >= 1
    # Charts drawn by matplotlib, also for a single hourly bucket.
    for asset, label in (("provider_comparison", "calls_chart"), ("provider_comparison", "latency_chart"),
                         ("calls_over_time", "chart")):
        assert meta[asset][label].value.startswith("![") and "data:image/svg+xml;base64," in meta[asset][label].value
    assert meta["usage_summary"]["calls"].value == 2
    recent = meta["recent_calls"]["table"].records
    assert len(recent) == 2 and {r.data["prompt"] for r in recent} == {"What is a comet?", "Name a prime number."}

    # The prompt search from the Launchpad: config `search`.
    search = {"ops": {"recent_calls": {"config": {"search": "comet"}}}}
    found = dg.materialize(ANALYTICS_ASSETS, selection=["recent_calls"], instance=instance, resources=resources,
                           run_config=search)
    [event] = found.get_asset_materialization_events()
    assert [r.data["prompt"] for r in event.materialization.metadata["table"].records] == ["What is a comet?"]


def test_analytics_refresh_on_their_own_every_hour(instance, resources):
    import datetime

    start = datetime.datetime(2026, 11, 30, 10, 30, tzinfo=datetime.timezone.utc)
    analytics = dg.Definitions(assets=ANALYTICS_ASSETS, resources=resources)
    first = dg.evaluate_automation_conditions(defs=analytics, instance=instance, evaluation_time=start)
    assert first.total_requested == 0
    later = dg.evaluate_automation_conditions(defs=analytics, instance=instance, cursor=first.cursor,
                                              evaluation_time=start + datetime.timedelta(hours=1))
    refreshed = {r.key.to_user_string() for r in later.results if r.true_subset.size}
    assert refreshed == {"provider_comparison", "calls_over_time", "failure_rates", "usage_summary", "recent_calls"}
