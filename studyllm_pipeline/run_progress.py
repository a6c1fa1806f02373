"""Live progress of a run executed in this process: which (dataset, K) partitions are done, as they finish.

`execute_in_process` returns only when the run is over; a watcher thread reads the run's
materialisations from the instance meanwhile (public `DagsterInstance.get_records_for_run` with a
cursor: only new events each time) and reports each partition of one asset once.
"""

import threading
from collections.abc import Callable

import dagster as dg

POLL_S = 0.5


class PartitionWatcher:
    """Calls `on_done(partition_key)` once per partition of `asset` materialised by run `run_id`."""

    def __init__(self, instance: dg.DagsterInstance, run_id: str, asset: str, on_done: Callable[[str], None]) -> None:
        self.instance = instance
        self.run_id = run_id
        self.asset_key = dg.AssetKey(asset)
        self.on_done = on_done
        self.seen: set[str] = set()
        self._cursor: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="studyllm-run-progress", daemon=True)

    def __enter__(self) -> "PartitionWatcher":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._poll()  # the last partitions, materialised after the last look

    def _watch(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self._poll()
            except Exception:  # noqa: BLE001 - progress is a courtesy: never fail the run over it
                return

    def _poll(self) -> None:
        found = self.instance.get_records_for_run(
            self.run_id, cursor=self._cursor, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        )
        self._cursor = found.cursor
        for record in found.records:
            event = record.event_log_entry.dagster_event
            if event is None or event.asset_key != self.asset_key or event.partition is None:
                continue
            if event.partition not in self.seen:
                self.seen.add(event.partition)
                self.on_done(event.partition)
