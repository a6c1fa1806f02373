"""The run and event log storages of studyllm's Dagster instance: dagster-postgres', without
repeated look-ups.

Dagster asks the catalog whether a table or column exists (its schema may predate a migration)
and whether a secondary index was built before many of its reads and writes, and asks the
database whether the dataset partition exists for every input of every step. In a `studyllm demo`
the table and partition questions were 1,450 of its 7,900 statements (counted with
`log_statement=all`); after those, each per-K run still asked 15 column questions of the catalog
(SQLAlchemy's inspector: one catalog query and its parsing each). Every one of these answers,
once yes, stays yes under a running instance: tables, columns and built indexes are not dropped,
and a dynamic partition is only removed through `delete_dynamic_partition`, which forgets it
here. A "no" is never remembered. (A partition deleted by another process is still "known" to
this one; a run launched for it fails in its own process, which starts with nothing cached.)
"""

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from dagster._serdes import ConfigurableClassData
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
from sqlalchemy import Connection


class _RemembersYes:
    """Shared by both storages: answers a yes/no question once it was yes, forgets on wipe, and is
    built from dagster.yaml as the subclass (dagster-postgres' `from_config_value` names its own class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._yes: set[Hashable] = set()
        super().__init__(*args, **kwargs)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]):  # noqa: ANN206
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def _remembered(self, key: Hashable, ask: Callable[[], bool]) -> bool:
        if key in self._yes:
            return True
        if ask():
            self._yes.add(key)
            return True
        return False

    def wipe(self) -> None:
        self._yes.clear()
        super().wipe()  # type: ignore[misc] - the storage class this is mixed into


class StudyllmEventLogStorage(_RemembersYes, PostgresEventLogStorage):
    """PostgresEventLogStorage that remembers existing tables, columns and dynamic partitions."""

    def has_table(self, table_name: str) -> bool:
        parent = super().has_table
        return self._remembered(("table", table_name), lambda: parent(table_name))

    def _has_asset_key_col_on_connection(self, conn: Connection, column_name: str) -> bool:
        parent = super()._has_asset_key_col_on_connection
        return self._remembered(("asset_keys column", column_name), lambda: parent(conn, column_name))

    def has_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> bool:
        parent = super().has_dynamic_partition
        return self._remembered(
            ("partition", partitions_def_name, partition_key), lambda: parent(partitions_def_name, partition_key)
        )

    def add_dynamic_partitions(self, partitions_def_name: str, partition_keys: Sequence[str]) -> None:
        super().add_dynamic_partitions(partitions_def_name, partition_keys)
        self._yes.update(("partition", partitions_def_name, key) for key in partition_keys)

    def delete_dynamic_partition(self, partitions_def_name: str, partition_key: str) -> None:
        self._yes.discard(("partition", partitions_def_name, partition_key))
        super().delete_dynamic_partition(partitions_def_name, partition_key)


class StudyllmRunStorage(_RemembersYes, PostgresRunStorage):
    """PostgresRunStorage that remembers that its run-stats columns and secondary indexes exist."""

    def has_run_stats_index_cols(self) -> bool:
        return self._remembered("run stats columns", super().has_run_stats_index_cols)

    def has_built_index(self, migration_name: str) -> bool:
        parent = super().has_built_index
        return self._remembered(("index", migration_name), lambda: parent(migration_name))
