"""`studyllm backfill`: a K sweep of one dataset as a Dagster backfill, created the way the UI creates
one (the webserver's GraphQL `launchPartitionBackfill`), so the daemon tracks it and its status is
the truth: it is completed only when its run finished, and failed when a K failed.

The backfill targets the (dataset, K) partitions of the per-K assets; their single-run backfill
policy makes a K range one run (the model loaded once). The dataset's partition and the K values
are added first where missing (as the UI's "Add partition" does, K in ascending order); a dataset
never prepared gets its preparation in the same backfill. Per-K status comes from the run's
progress lines while it runs, then from the per-K records the run stored (the core's SweepResults).
"""

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

import httpx

from studyllm_core.errors import NotFoundError, StudyllmError
from studyllm_pipeline.jobs import PER_K, PREPARE
from studyllm_pipeline.partitions import contiguous_ranges, new_k_values, partition_key

DEFAULT_URL = "http://127.0.0.1:3000"
ENV_URL = "STUDYLLM_DAGSTER_URL"
REPOSITORY = {"repositoryName": "__repository__", "repositoryLocationName": "studyllm"}
TERMINAL_RUN = {"SUCCESS", "FAILURE", "CANCELED"}
TERMINAL_BACKFILL = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}
PROGRESS = re.compile(r"^K=(\d+) \((\d+)/(\d+)\)")


class DagsterUnavailable(StudyllmError):
    """The webserver does not answer, or the daemon is not running."""


def webserver_url(url: Optional[str] = None) -> str:
    return (url or os.environ.get(ENV_URL) or DEFAULT_URL).rstrip("/")


class GraphQL:
    """The webserver's GraphQL API, the one the UI uses."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self.client = httpx.Client(base_url=url, timeout=timeout)

    def __call__(self, query: str, variables: Optional[dict[str, Any]] = None) -> dict[str, Any]:
        try:
            response = self.client.post("/graphql", json={"query": query, "variables": variables or {}})
        except httpx.HTTPError:
            raise DagsterUnavailable(
                f"no Dagster webserver answers at {self.url}: start it with `studyllm dev` "
                f"(or pass --url / set {ENV_URL})"
            ) from None
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        if response.status_code != 200 or body.get("errors"):
            message = (body.get("errors") or [{}])[0].get("message") or response.text[:200]
            raise StudyllmError(f"the Dagster webserver at {self.url} refused the request: {message}")
        return body["data"]

    def close(self) -> None:
        self.client.close()


DAEMON = """{ instance { daemonHealth { daemonStatus(daemonType: "BACKFILL") { healthy lastHeartbeatTime } } } }"""
HEARTBEAT_MAX_AGE_S = 120  # the daemon beats every 30 s; Dagster itself calls it healthy for 30 min after the last
AXES = """{ assetNodeOrError(assetKey: {path: ["clusters"]}) { ... on AssetNode {
  partitionKeysByDimension { name partitionKeys } } } }"""
LAUNCH = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  ... on UnauthorizedError { message } ... on PartitionSetNotFoundError { message } } }"""
BACKFILL = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { id status runs(limit: 10) { runId status } }
  ... on BackfillNotFoundError { message } ... on PythonError { message } } }"""
RUN_LOGS = """query($id: ID!, $cursor: String) { logsForRun(runId: $id, afterCursor: $cursor, limit: 500) {
  ... on EventConnection { cursor hasMore events { __typename
    ... on MessageEvent { message }
    ... on ExecutionStepFailureEvent { error { message } }
    ... on MaterializationEvent { assetKey { path } partition } } } } }"""


def check_daemon(graphql: GraphQL, now: Optional[float] = None) -> None:
    """DagsterUnavailable unless the backfill daemon beat in the last HEARTBEAT_MAX_AGE_S seconds."""
    status = graphql(DAEMON)["instance"]["daemonHealth"]["daemonStatus"]
    beat = status.get("lastHeartbeatTime")
    age = None if beat is None else (now or time.time()) - beat
    if not status.get("healthy") or age is None or age > HEARTBEAT_MAX_AGE_S:
        since = "never seen" if age is None else f"last seen {age:.0f} s ago"
        raise DagsterUnavailable(
            f"the Dagster daemon is not running ({since}), so nothing would run the backfill: start `studyllm dev` "
            "(or `dagster-daemon run` in a deployment)"
        )


ADD_PARTITION = """mutation($repo: RepositorySelector!, $name: String!, $key: String!) { addDynamicPartition(
  repositorySelector: $repo, partitionsDefName: $name, partitionKey: $key) { __typename ... on PythonError { message }
  ... on UnauthorizedError { message } } }"""


def ensure_partitions(graphql: GraphQL, dataset: str, ks: list[int]) -> list[str]:
    """Add the dataset's partition and the K values not on the axis yet (the UI's "Add partition"); the K axis."""
    axes = {d["name"]: d["partitionKeys"] for d in graphql(AXES)["assetNodeOrError"]["partitionKeysByDimension"]}
    additions = [("datasets", dataset)] if dataset not in axes.get("dataset", []) else []
    added = new_k_values(axes.get("k", []), ks)
    for name, key in [*additions, *(("k", k) for k in added)]:
        result = graphql(ADD_PARTITION, {"repo": REPOSITORY, "name": name, "key": key})["addDynamicPartition"]
        if result["__typename"] != "AddDynamicPartitionSuccess":
            raise StudyllmError(f"Dagster refused to add the partition {key!r} to {name}: "
                                f"{result.get('message', result['__typename'])}")
    return [*axes.get("k", []), *added]


def launch(graphql: GraphQL, dataset: str, ks: list[int], axis: list[str], *, prepare: bool,
           source: str = "studyllm backfill") -> str:
    """Create the backfill (the UI's mutation) of the (dataset, K) partitions and return its id."""
    ranges = [{"start": partition_key(dataset, run[0]), "end": partition_key(dataset, run[-1])}
              for run in contiguous_ranges(axis, ks)]
    selection = [{"assetKey": {"path": [name]}, "partitions": {"ranges": ranges}} for name in PER_K]
    if prepare:
        selection += [{"assetKey": {"path": [name]}, "partitions": {"ranges": [{"start": dataset, "end": dataset}]}}
                      for name in PREPARE]
    params = {
        "partitionsByAssets": selection,
        "tags": [{"key": "studyllm/source", "value": source}],
        "title": f"K {ks[0]}..{ks[-1]} of {dataset}",
    }
    result = graphql(LAUNCH, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise StudyllmError(f"Dagster refused the backfill: {result.get('message', result['__typename'])}")
    return result["backfillId"]


@dataclass
class BackfillState:
    """A backfill as Dagster reports it, with the per-K status of its sweep."""

    id: str
    status: str
    dataset: str
    requested: list[int]
    runs: list[dict[str, str]] = field(default_factory=list)
    k_status: dict[int, str] = field(default_factory=dict)  # K -> done | failed: reason | not run | pending
    progress: Optional[str] = None
    failure: Optional[str] = None

    @property
    def runs_finished(self) -> bool:
        return bool(self.runs) and all(r["status"] in TERMINAL_RUN for r in self.runs)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_BACKFILL

    @property
    def failed_k(self) -> list[int]:
        return [k for k in self.requested if self.k_status.get(k) != "done"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "runs": self.runs,
            "per_k": {str(k): self.k_status.get(k, "pending") for k in self.requested},
            "failure": self.failure,
        }


def read_state(graphql: GraphQL, backfill_id: str, dataset: str, requested: list[int]) -> BackfillState:
    """The backfill's status, its runs, and each requested K's status so far: done once its
    partition is materialized; once the runs ended, what the run that took the K recorded."""
    data = graphql(BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
    if "status" not in data:
        raise NotFoundError(f"backfill {backfill_id}: {data.get('message', 'not found')}")
    state = BackfillState(id=backfill_id, status=data["status"], dataset=dataset, requested=requested, runs=data["runs"] or [])
    for run in state.runs:
        _read_run(graphql, run, state)
    if state.runs_finished:
        _final_statuses(state)
    return state


def _read_run(graphql: GraphQL, run: dict[str, str], state: BackfillState) -> None:
    cursor = None
    while True:
        logs = graphql(RUN_LOGS, {"id": run["runId"], "cursor": cursor})["logsForRun"]
        for event in logs.get("events") or []:
            kind = event["__typename"]
            if kind == "ExecutionStepFailureEvent" and state.failure is None:
                state.failure = ((event.get("error") or {}).get("message", "").strip().splitlines() or [""])[0][:300]
            elif kind == "MaterializationEvent" and event["assetKey"]["path"] == ["cluster_metrics"]:
                dataset, _, k = (event.get("partition") or "").partition("|")
                if dataset == state.dataset and k.isdigit():
                    state.k_status[int(k)] = "done"
            elif kind == "LogMessageEvent" and PROGRESS.match(event.get("message") or ""):
                state.progress = event["message"]
        cursor = logs.get("cursor")
        if not logs.get("hasMore"):
            return


def _final_statuses(state: BackfillState) -> None:
    """Each K as the backfill's run recorded it (failed or refused, with the reason), else not run."""
    from studyllm_core.db.engine import open_database
    from studyllm_core.services.sweep.result_store import SweepResults
    from studyllm_core.config import get_settings

    runs = {r["runId"] for r in state.runs}
    for record in SweepResults(open_database(), get_settings().artifacts_dir).records(state.dataset, state.requested):
        k = record["k"]
        if record["run_id"] in runs and k not in state.k_status:
            state.k_status[k] = record["status"] + (f": {record['reason']}" if record["reason"] else "")
    for k in state.requested:
        state.k_status.setdefault(k, "not run" + (f" ({state.failure})" if state.failure else ""))


def wait(
    graphql: GraphQL,
    backfill_id: str,
    dataset: str,
    requested: list[int],
    *,
    on_change: Optional[Callable[[BackfillState], None]] = None,
    poll_s: float = 1.0,
    timeout_s: float = 6 * 3600,
    close_wait_s: float = 45.0,
) -> BackfillState:
    """Poll until Dagster closes the backfill, reporting changes. The daemon closes it on its next
    pass (every 30 s) after the runs finished; if it has not `close_wait_s` after that, the state
    is returned as it is (its per-K status is final once the runs are)."""
    deadline = time.monotonic() + timeout_s
    runs_done_at = None
    last = None
    while True:
        state = read_state(graphql, backfill_id, dataset, requested)
        seen = (state.status, tuple((r["runId"], r["status"]) for r in state.runs), state.progress)
        if seen != last and on_change is not None:
            on_change(state)
            last = seen
        if state.finished:
            return state
        if not state.runs_finished:
            runs_done_at = None  # (a backfill that prepares the dataset submits the K run after the first)
        else:
            runs_done_at = runs_done_at or time.monotonic()
            if time.monotonic() - runs_done_at > close_wait_s:
                return state
        if time.monotonic() > deadline:
            raise StudyllmError(f"backfill {backfill_id} did not finish within {timeout_s:.0f} s; it goes on in Dagster")
        time.sleep(poll_s)


def check_request(dataset: str, k_min: int, k_max: int) -> tuple[int, bool]:
    """(usable texts, whether the dataset still needs preparing); InputError for K the dataset cannot take."""
    from studyllm_core.db.engine import open_database
    from studyllm_core.services.datasets import DatasetRegistry
    from studyllm_core.services.sweep.recipe import check_k_range

    registry = DatasetRegistry(open_database())
    known = registry.usable_texts(dataset)
    n = known if known is not None else len(registry.load(registry.get(dataset)).texts)
    check_k_range(k_min, k_max, n, f"usable texts of dataset {dataset!r}")
    return n, known is None
