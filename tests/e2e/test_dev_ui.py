"""`studyllm dev` for real: the webserver answers GraphQL, the asset graph renders in headless
Chromium (Debian's package), a dataset prepared and a K backfill launched through the UI's own
GraphQL API run to success on the daemon, and SIGTERM leaves nothing running."""

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import httpx
import psutil
import pytest

from support import STUDYLLM_EXE, TEST_API_KEY

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, timeout: float, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"studyllm dev exited early:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def processes_mentioning(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + " ".join(f"{k}={v}" for k, v in (proc.info["environ"] or {}).items())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if marker in text and proc.pid != os.getpid():
            found.append(proc)
    return found


REPO = {"repositoryName": "__repository__", "repositoryLocationName": "studyllm"}


def graphql(base: str, query: str, variables: dict | None = None) -> dict:
    """One GraphQL request to the webserver, the way the UI makes them."""
    body = httpx.post(f"{base}/graphql", json={"query": query, "variables": variables or {}}, timeout=60).json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def wait_for_run(base: str, run_id: str, timeout: float = 300) -> str:
    query = "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = graphql(base, query, {"id": run_id})["runOrError"]["status"]
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            return status
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s")


def prepare_and_backfill_from_the_ui(base: str, source: Path) -> None:
    """What a user clicks: add a dataset partition, launch prepare_dataset with its file, backfill K."""
    graphql(base, """mutation($repo: RepositorySelector!) { addDynamicPartition(repositorySelector: $repo,
        partitionsDefName: "datasets", partitionKey: "e2e") { __typename } }""", {"repo": REPO})
    launched = graphql(base, """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
        __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }""", {"params": {
        "selector": {**REPO, "jobName": "prepare_dataset"},
        "runConfigData": {"ops": {"dataset_snapshot": {"config": {"source_path": str(source)}}}},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "e2e"}]},
    }})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    assert wait_for_run(base, launched["run"]["runId"]) == "SUCCESS"

    backfill = graphql(base, """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
        __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""", {"params": {
        "selector": {"partitionSetName": "sweep_k_partition_set", "repositorySelector": REPO},
        "partitionNames": ["e2e|2", "e2e|3"],
    }})["launchPartitionBackfill"]
    assert backfill["__typename"] == "LaunchBackfillSuccess", backfill
    query = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
        ... on PartitionBackfill { status runs(limit: 10) { status tags { key value } } } } }"""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = graphql(base, query, {"id": backfill["backfillId"]})["partitionBackfillOrError"]
        if state["status"] in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
            break
        time.sleep(2)
    assert state["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), state
    partitions = sorted(t["value"] for r in state["runs"] for t in r["tags"] if t["key"] == "dagster/partition")
    assert partitions == ["e2e|2", "e2e|3"] and all(r["status"] == "SUCCESS" for r in state["runs"])


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_dev_serves_the_asset_graph_runs_a_ui_backfill_and_stops_cleanly(tmp_path, stub):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "STUDYLLM_DATABASE_URL"}
    env["STUDYLLM_HOME"] = str(home)
    # Runs launched from the UI embed through the loopback server instead of the local model.
    env.update(STUDYLLM_EMBED_PROVIDER="openai-compatible", STUDYLLM_EMBED_MODEL="stub-embedding",
               STUDYLLM_EMBED_BASE_URL=stub.base_url, OPENAI_COMPATIBLE_API_KEY=TEST_API_KEY)
    source = tmp_path / "e2e.csv"
    source.write_text("text\n" + "".join(f"note {i} about {['stars', 'bread', 'trains'][i % 3]}\n" for i in range(30)))
    port = free_port()
    log = (tmp_path / "dev.log").open("w")
    proc = subprocess.Popen([STUDYLLM_EXE, "dev", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/server_info", 180, proc, tmp_path / "dev.log")

        query = "{ assetNodes { assetKey { path } groupName } }"
        nodes = httpx.post(f"{base}/graphql", json={"query": query}, timeout=60).json()["data"]["assetNodes"]
        assets = {"/".join(n["assetKey"]["path"]): n["groupName"] for n in nodes}
        for name in ("dataset_snapshot", "embeddings", "pca_projection", "clusters", "cluster_summaries",
                     "cluster_metrics", "sweep_report"):
            assert assets[name] == "sweep"
        assert assets["provider_comparison"] == "analytics" and assets["prompt_run"] == "prompts"

        from playwright.sync_api import sync_playwright

        shot = tmp_path / "asset-graph.png"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{base}/locations/studyllm/asset-groups/sweep/lineage", timeout=120_000)
            page.get_by_text("sweep_report").first.wait_for(timeout=120_000)
            page.get_by_text("cluster_summaries").first.wait_for(timeout=30_000)
            page.screenshot(path=str(shot))
            browser.close()
        assert shot.stat().st_size > 20_000
        keep = os.environ.get("STUDYLLM_E2E_SCREENSHOTS")  # a folder to keep the screenshot in, e.g. in CI
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(keep) / "asset-graph.png")

        prepare_and_backfill_from_the_ui(base, source)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        finally:
            log.close()
    assert proc.returncode == 0, (tmp_path / "dev.log").read_text()[-3000:]
    deadline = time.monotonic() + 30
    while processes_mentioning(str(home)) and time.monotonic() < deadline:
        time.sleep(0.5)
    leftovers = processes_mentioning(str(home))
    assert not leftovers, [" ".join(p.cmdline()) for p in leftovers]


def dagster_processes(home: Path) -> list[psutil.Process]:
    """Live Dagster processes of this home (dagster dev, webserver, daemon, code server, run workers)."""
    found = []
    for proc in processes_mentioning(str(home)):
        try:
            if "dagster" in " ".join(proc.cmdline()) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP], ids=["kill-9", "hangup"])
def test_dev_takes_its_children_with_it_when_killed_or_its_terminal_closes(tmp_path, sig):
    """kill -9 of `studyllm dev` (nothing of it runs any more) or SIGHUP (a closed terminal): no Dagster process
    of it is left, so no daemon goes on running schedules that spend money."""
    from studyllm_core.db.server import stop_embedded

    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "STUDYLLM_DATABASE_URL"}
    env["STUDYLLM_HOME"] = str(home)
    port = free_port()
    log = (tmp_path / "dev.log").open("w")
    proc = subprocess.Popen([STUDYLLM_EXE, "dev", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(f"http://127.0.0.1:{port}/server_info", 180, proc, tmp_path / "dev.log")
        started = dagster_processes(home)
        assert len(started) >= 3, [" ".join(p.cmdline()) for p in started]  # dagster dev, webserver, daemon, ...
        os.kill(proc.pid, sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 60
        while dagster_processes(home) and time.monotonic() < deadline:
            time.sleep(0.5)
        leftovers = dagster_processes(home)
        assert not leftovers, [" ".join(p.cmdline()) for p in leftovers]
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
        for p in dagster_processes(home):  # never leave a daemon behind, even when the test fails
            p.kill()
        stop_embedded(home / "pg")
