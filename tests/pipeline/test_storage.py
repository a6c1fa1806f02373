"""The instance's event log storage: dagster-postgres' with repeated table and partition look-ups skipped."""

import uuid

from sqlalchemy import event

from studyllm_pipeline.storage import StudyllmEventLogStorage


def count_queries(storage: StudyllmEventLogStorage) -> list[str]:
    statements: list[str] = []
    event.listen(storage._engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    return statements


def test_the_instance_uses_the_studyllm_event_log_storage(instance):
    assert isinstance(instance.event_log_storage, StudyllmEventLogStorage)


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
