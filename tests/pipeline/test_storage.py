"""The instance's run and event log storages: dagster-postgres' with repeated schema and partition
look-ups skipped."""

import uuid

import dagster as dg
from sqlalchemy import event

from studyllm_pipeline.storage import StudyllmEventLogStorage, StudyllmRunStorage


def count_queries(storage) -> list[str]:
    statements: list[str] = []
    event.listen(storage._engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    return statements


def test_the_instance_uses_the_studyllm_storages(instance):
    assert isinstance(instance.event_log_storage, StudyllmEventLogStorage)
    assert isinstance(instance.run_storage, StudyllmRunStorage)


def test_schema_questions_are_asked_once(instance):
    events, runs = instance.event_log_storage, instance.run_storage
    event_statements, run_statements = count_queries(events), count_queries(runs)
    assert events.has_asset_key_index_cols() and runs.has_run_stats_index_cols()
    assert len(event_statements) > 0 and len(run_statements) > 0  # the first answers came from the catalog
    event_statements.clear()
    run_statements.clear()
    for _ in range(3):
        assert events.has_asset_key_index_cols() and runs.has_run_stats_index_cols()
    assert event_statements == [] and run_statements == []
    assert not events.has_asset_key_col("no_such_column")  # a "no" is asked every time
    assert len(event_statements) > 0


def test_known_partitions_and_tables_are_answered_without_a_query(instance):
    storage, name = instance.event_log_storage, f"datasets_{uuid.uuid4().hex[:8]}"
    statements = count_queries(storage)
    assert not storage.has_dynamic_partition(name, "alpha")
    assert len(statements) > 0
    instance.add_dynamic_partitions(name, ["alpha"])
    assert storage.has_table("event_logs")
    statements.clear()
    for _ in range(3):
        assert storage.has_dynamic_partition(name, "alpha")
        assert storage.has_table("event_logs")
    assert statements == []
    assert instance.get_dynamic_partitions(name) == ["alpha"]  # listings still read the database


def test_a_deleted_partition_is_forgotten_and_a_missing_one_asked_again(instance):
    storage, name = instance.event_log_storage, f"datasets_{uuid.uuid4().hex[:8]}"
    instance.add_dynamic_partitions(name, ["alpha", "beta"])
    instance.delete_dynamic_partition(name, "alpha")
    assert not storage.has_dynamic_partition(name, "alpha")
    assert storage.has_dynamic_partition(name, "beta")
    statements = count_queries(storage)
    assert not storage.has_dynamic_partition(name, "gamma")  # a "no" is never remembered
    assert not storage.has_dynamic_partition(name, "gamma")
    assert len(statements) >= 2
    assert not storage.has_table("no_such_table") and not storage.has_table("no_such_table")


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
