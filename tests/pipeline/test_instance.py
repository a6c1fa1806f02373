"""The Dagster instance as shipped: dagster-postgres' storage unchanged, public Dagster APIs only,
and the log level runs store messages at."""

import re

import dagster as dg

from support import ROOT, packaged_dagster_yaml


def test_dagster_yaml_uses_stock_dagster_postgres_storage():
    config = packaged_dagster_yaml()
    assert set(config["storage"]) == {"postgres"}  # dagster-postgres' own storage, no subclass
    assert not {"run_storage", "event_log_storage", "schedule_storage"} & set(config)
    text = (ROOT / "studyllm_pipeline" / "dagster.yaml").read_text() + (ROOT / "docker-compose.yml").read_text()
    assert "studyllm_pipeline." not in text.replace("studyllm_pipeline.definitions", "")
    assert "dagster._" not in text


def test_shipped_code_uses_public_dagster_apis_only():
    private = re.compile(r"dagster\._")
    shipped = [p for folder in ("studyllm_core", "studyllm_pipeline", "benchmarks") for p in (ROOT / folder).rglob("*.py")]
    offenders = [str(p.relative_to(ROOT)) for p in shipped if private.search(p.read_text())]
    assert shipped and offenders == []


def test_runs_store_info_messages_but_not_debug_ones(instance):
    """dagster.yaml's python_log_level INFO: a DEBUG line of a step (an IO manager's "Loading
    partition ...") is not stored; INFO lines and Dagster's own events are."""

    @dg.asset
    def chatty(context: dg.AssetExecutionContext) -> int:
        context.log.debug("a debug line")
        context.log.info("an info line")
        return 1

    result = dg.materialize([chatty], instance=instance)
    stored = instance.all_logs(result.run_id)
    messages = [record.user_message for record in stored if not record.is_dagster_event]
    assert "an info line" in messages and "a debug line" not in messages
    assert any(record.is_dagster_event and record.dagster_event.event_type_value == "STEP_SUCCESS" for record in stored)
