"""The event log storage of studyllm's Dagster instance: dagster-postgres', without repeated look-ups.

Dagster asks the catalog whether a table exists before many of its reads, and asks the database
whether the dataset partition exists for every input of every step. In a `studyllm demo` those
two were 1,450 of its 7,900 statements (counted with `log_statement=all`), each a round trip
with its own transaction. Both answers, once yes, stay yes: a table is not dropped under a
running instance, and a dynamic partition is only removed through `delete_dynamic_partition`,
which forgets it here. (A partition deleted by another process is still "known" to this one;
a run launched for it fails in its own process, which starts with nothing cached.)
"""

from collections.abc import Mapping, Sequence
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config


class StudyllmEventLogStorage(PostgresEventLogStorage):
    """PostgresEventLogStorage that remembers existing tables and dynamic partitions it has seen."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._known_tables: set[str] = set()
        self._known_partitions: set[tuple[str, str]] = set()
        super().__init__(*args, **kwargs)

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> "StudyllmEventLogStorage":
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def has_table(self, table_name: str) -> bool:
        if table_name in self._known_tables:
            return True
        exists = super().has_table(table_name)
        if exists:
            self._known_tables.add(table_name)
        return exists

    def has_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> bool:
        if (partitions_def_name, partition_key) in self._known_partitions:
            return True
        exists = super().has_dynamic_partition(partitions_def_name, partition_key)
        if exists:
            self._known_partitions.add((partitions_def_name, partition_key))
        return exists

    def add_dynamic_partitions(self, partitions_def_name: str, partition_keys: Sequence[str]) -> None:
        super().add_dynamic_partitions(partitions_def_name, partition_keys)
        self._known_partitions.update((partitions_def_name, key) for key in partition_keys)

    def delete_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> None:
        self._known_partitions.discard((partitions_def_name, partition_key))
        super().delete_dynamic_partition(partitions_def_name, partition_key)

    def wipe(self) -> None:
        self._known_tables.clear()
        self._known_partitions.clear()
        super().wipe()
