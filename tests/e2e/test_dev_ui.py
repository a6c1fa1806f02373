"""`studyllm dev` for real: the webserver answers GraphQL, the asset graph renders in headless
Chromium (Debian's package), a dataset prepared through the UI's own GraphQL API, a K range swept
by `studyllm backfill` on the daemon in one run, UI-launched runs that respect the run limits, a
backfill cancelled midway whose report names the missing K and a run that recovers them, the
catalog's K axis, the report's per_k table, a failing blocking check and the analytics page (with
screenshots), a prompt run's replies prepared, swept and compared by the daemon alone (with a
screenshot of study_comparison), and SIGTERM leaves nothing running."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
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


SENSOR_INTERVAL_S = 5  # how often the dev's sensors and report automation look (STUDYLLM_SENSOR_INTERVAL_S)


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


PER_K = ["clusters", "cluster_summaries", "cluster_metrics"]
LAUNCH_RUN = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
RUN = """query($id: ID!) { runOrError(runId: $id) { ... on Run { status tags { key value }
    stats { ... on RunStatsSnapshot { startTime endTime } } } } }"""


def launch(base: str, params: dict) -> str:
    launched = graphql(base, LAUNCH_RUN, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def materialize_from_the_ui(base: str, dataset: str, k: int) -> str:
    """What the UI sends for "Materialize" on the per-K assets at one (dataset, K) partition."""
    return launch(base, {
        "selector": {**REPO, "jobName": "__ASSET_JOB", "assetSelection": [{"path": [a]} for a in PER_K]},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": f"{dataset}|{k}"},
                                       {"key": "dagster/partition/dataset", "value": dataset},
                                       {"key": "dagster/partition/k", "value": str(k)}]},
    })


def run_state(base: str, run_id: str) -> dict:
    return graphql(base, RUN, {"id": run_id})["runOrError"]


def prepare_from_the_ui(base: str, source: Path) -> None:
    """What a user clicks: add a dataset partition, launch prepare_dataset with its file."""
    graphql(base, """mutation($repo: RepositorySelector!) { addDynamicPartition(repositorySelector: $repo,
        partitionsDefName: "datasets", partitionKey: "e2e") { __typename } }""", {"repo": REPO})
    run_id = launch(base, {
        "selector": {**REPO, "jobName": "prepare_dataset"},
        "runConfigData": {"ops": {"dataset_snapshot": {"config": {"source_path": str(source)}}}},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "e2e"}]},
    })
    assert wait_for_run(base, run_id) == "SUCCESS"


REGISTER = """import sys
from studyllm_core.db.engine import open_database
from studyllm_core.services.datasets import DatasetRegistry, DatasetSource
DatasetRegistry(open_database()).register(DatasetSource(name=sys.argv[1], path=sys.argv[2]))
"""


def backfill_with_the_cli(base: str, env: dict, source: Path) -> None:
    """`studyllm backfill --wait --json` for a dataset studyllm knows and Dagster not yet: the dataset
    partition and the K values are added, the dataset is prepared, the K range is one run; the daemon
    tracks the backfill and it tells the truth."""
    subprocess.run([sys.executable, "-c", REGISTER, "cli-only", str(source)], env=env, check=True, timeout=120)
    result = subprocess.run([STUDYLLM_EXE, "backfill", "cli-only", "--k-min", "2", "--k-max", "4", "--wait", "--json",
                             "--url", base], env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["status"] == "COMPLETED_SUCCESS" and report["per_k"] == {"2": "done", "3": "done", "4": "done"}
    assert "waiting for the daemon" in result.stderr  # progress on stderr, the JSON alone on stdout
    tags = [{t["key"]: t["value"] for t in run_state(base, r["runId"])["tags"]} for r in report["runs"]]
    ranged = [t for t in tags if "dagster/asset_partition_range_start" in t]
    assert len(ranged) == 1  # the whole K range in one run (the other run prepared the dataset)
    assert (ranged[0]["dagster/asset_partition_range_start"], ranged[0]["dagster/asset_partition_range_end"]) == (
        "cli-only|2", "cli-only|4")


def ui_runs_respect_the_run_limits(base: str) -> None:
    """dagster.yaml's limit holds for runs launched from the UI: one run per dataset at a time (the
    pool alone would let two run)."""
    run_ids = [materialize_from_the_ui(base, "e2e", k) for k in (2, 3, 4)]
    assert [wait_for_run(base, run_id) for run_id in run_ids] == ["SUCCESS"] * 3
    spans = sorted((s["startTime"], s["endTime"]) for s in (run_state(base, r)["stats"] for r in run_ids))
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:])), spans


def cancel_midway_then_recover(base: str, env: dict, stub) -> str:
    """A backfill whose run is cancelled after K=3: `studyllm backfill --wait` exits 1 naming the K not
    done, the done K stay materialized, the report that follows names the missing ones, and the next
    run recovers them."""
    stub.faults.set(latency_s=0.4)  # each summary round's embeddings take 0.4 s: a K takes about a second
    cli = subprocess.Popen([STUDYLLM_EXE, "backfill", "e2e", "--k-min", "2", "--k-max", "20", "--wait", "--json",
                            "--url", base], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    query = """query { runsOrError(filter: {tags: [{key: "dagster/asset_partition_range_start", value: "e2e|2"}],
        statuses: [STARTED]}) { ... on Runs { results { runId } } } }"""
    deadline = time.monotonic() + 180
    run_id = None
    while run_id is None or not any(m.startswith("K=3 ") for m in run_messages(base, run_id)):
        assert time.monotonic() < deadline and cli.poll() is None, cli.communicate()
        started = graphql(base, query)["runsOrError"]["results"]
        run_id = run_id or (started[0]["runId"] if started else None)
        time.sleep(0.3)
    cancelled_at = time.time()
    graphql(base, "mutation($id: String!) { terminateRun(runId: $id) { __typename } }", {"id": run_id})
    out, err = cli.communicate(timeout=180)
    stub.faults.set(latency_s=0.0)
    assert cli.returncode == 1, err
    report = json.loads(out)
    assert report["status"] in ("COMPLETED_FAILED", "FAILED", "CANCELED")
    assert report["per_k"]["2"] == report["per_k"]["3"] == "done" and report["per_k"]["20"].startswith("not run")

    query = """query { assetNodeOrError(assetKey: {path: ["sweep_report"]}) { ... on AssetNode {
        assetMaterializations(partitions: ["e2e"], limit: 1) { runId timestamp metadataEntries { label
        ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue } } } } } }"""
    deadline = time.monotonic() + 120  # the report's automation looks every SENSOR_INTERVAL_S
    while True:
        latest = (graphql(base, query)["assetNodeOrError"]["assetMaterializations"] or [None])[0]
        if latest and float(latest["timestamp"]) / 1000 > cancelled_at:
            break
        assert time.monotonic() < deadline, "the report did not follow the cancelled sweep:\n" + "\n".join(run_messages(base, run_id)[-25:])
        time.sleep(2)
    assert wait_for_run(base, latest["runId"]) == "SUCCESS"  # its check is stored after the materialization
    meta = {e["label"]: e.get("text", e.get("intValue")) for e in latest["metadataEntries"]}
    assert meta["k_swept"] == 19 and 2 <= meta["k_done"] < 19
    assert re.fullmatch(r"K \d+\.\.20 missing \(not run\)", meta["missing"]), meta["missing"]
    checks = [e for e in run_events(base, latest["runId"]) if e["__typename"] == "AssetCheckEvaluationEvent"]
    k_check = next(e["evaluation"] for e in checks if e["evaluation"]["checkName"] == "requested_k_done")
    assert not k_check["success"] and k_check["severity"] == "WARN" and k_check["description"] == meta["missing"]

    # The next good run: the K range again as one run (what a schedule or a re-run of the backfill sends).
    recovery = launch(base, {
        "selector": {**REPO, "jobName": "sweep_k"},
        "executionMetadata": {"tags": [{"key": "dagster/asset_partition_range_start", "value": "e2e|2"},
                                       {"key": "dagster/asset_partition_range_end", "value": "e2e|20"}]},
    })
    assert wait_for_run(base, recovery) == "SUCCESS"
    return recovery


def wait_for_comparison(base: str, dataset: str, after_run: str, timeout: float = 420) -> str:
    """The run report_automation launches once `after_run` has ended (sweep_report, then study_comparison, of
    `dataset`), waited for until it is done: nothing of the automation is left in progress."""
    ended = graphql(base, "query($id: ID!) { runOrError(runId: $id) { ... on Run { endTime } } }",
                    {"id": after_run})["runOrError"]["endTime"]
    query = """query($key: AssetKeyInput!, $p: String!) { assetOrError(assetKey: $key) { ... on Asset {
        assetMaterializations(partitions: [$p], limit: 1) { runId timestamp } } } }"""
    deadline = time.monotonic() + timeout  # sensor ticks are SENSOR_INTERVAL_S apart
    while time.monotonic() < deadline:
        found = graphql(base, query, {"key": {"path": ["study_comparison"]}, "p": dataset})["assetOrError"]
        latest = (found["assetMaterializations"] or [None])[0]
        if latest and float(latest["timestamp"]) / 1000 > ended:
            assert wait_for_run(base, latest["runId"]) == "SUCCESS"
            return latest["runId"]
        time.sleep(2)
    raise AssertionError(f"the automation did not compare {dataset} after run {after_run}")


def wait_until_quiet(base: str, quiet_for: float = SENSOR_INTERVAL_S + 10, timeout: float = 420) -> None:
    """Wait until no run is queued or running for `quiet_for` seconds (longer than the automation's tick), so
    whatever the automation follows a run with has been launched and done."""
    query = """query { runsOrError(filter: {statuses: [QUEUED, NOT_STARTED, STARTING, STARTED, CANCELING]}) {
        ... on Runs { results { runId } } } }"""
    deadline, quiet_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        if graphql(base, query)["runsOrError"]["results"]:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_for:
            return
        time.sleep(2)
    raise AssertionError(f"runs were still queued or running after {timeout:.0f} s")


def run_events(base: str, run_id: str) -> list[dict]:
    query = """query($id: ID!) { logsForRun(runId: $id, limit: 1000) { ... on EventConnection { events { __typename
        ... on MessageEvent { message }
        ... on AssetCheckEvaluationEvent { evaluation { checkName success severity description } } } } } }"""
    return graphql(base, query, {"id": run_id})["logsForRun"]["events"]


def run_messages(base: str, run_id: str) -> list[str]:
    return [e.get("message") or "" for e in run_events(base, run_id)]


def catalog_shows_the_k_axis(base: str, tmp_path: Path) -> None:
    """After the recovery no partition is failed; e2e has every requested K; cli-only, which asked
    for K 2..4 only, shows the K other datasets asked for as missing (the shared K axis)."""
    query = """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { ... on AssetNode {
        partitionStats { numMaterialized numFailed numPartitions } } } }"""
    for name in ("dataset_snapshot", "sweep_report"):
        stats = graphql(base, query, {"key": {"path": [name]}})["assetNodeOrError"]["partitionStats"]
        assert stats == {"numMaterialized": 2, "numFailed": 0, "numPartitions": 2}, (name, stats)
    for name in PER_K:  # 2 datasets x K 2..20: e2e's 19 and cli-only's 3 materialized
        stats = graphql(base, query, {"key": {"path": [name]}})["assetNodeOrError"]["partitionStats"]
        assert stats == {"numMaterialized": 22, "numFailed": 0, "numPartitions": 38}, (name, stats)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{base}/assets", timeout=120_000)
        page.get_by_text("38 partitions").first.wait_for(timeout=60_000)
        page.wait_for_timeout(2000)  # every row's status loads on its own
        page.screenshot(path=str(tmp_path / "catalog.png"))
        text = page.inner_text("body")
        browser.close()
    # Per-K assets: 22 materialized, 16 missing (cli-only's K 5..20), 0 failed, 0 in progress, of 38.
    assert len(re.findall(r"22\s+16\s+0\s+0\s+38 partitions", text)) == 3, text
    # dataset_snapshot, embeddings, pca_projection, pca_basis, sweep_report, and study_comparison (after each report)
    assert len(re.findall(r"All\s+0\s+0\s+0\s+2 partitions", text)) == 6, text


def wait_for_launch(base: str, params: dict) -> str:
    run_id = launch(base, params)
    return wait_for_run(base, run_id)


def keep(shot: Path) -> None:
    """Copy a screenshot to STUDYLLM_E2E_SCREENSHOTS (a folder, e.g. in CI) when it is set."""
    folder = os.environ.get("STUDYLLM_E2E_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(folder) / shot.name)


def table_headers(page, label: str) -> list[str]:
    """The column names of the table metadata entry `label` in an asset's metadata panel."""
    row = page.locator("tr", has=page.get_by_text(label, exact=True)).first
    return [h.strip() for h in row.locator("table th").all_inner_texts()]


def ui_shows_tables_checks_and_analytics(base: str, tmp_path: Path) -> None:
    """What a Dagster user opens, in Chromium: the sweep report's per_k is a real table whose columns are
    described; a dataset of mostly empty rows fails its blocking check (the run fails, nothing is
    embedded) and the check's page says why and for which partition; the analytics show the provider
    table and a chart drawn by matplotlib."""
    gappy = tmp_path / "gappy.csv"
    gappy.write_text("text\n" + "".join(f"note {i} about stars\n" if i % 2 else '""\n' for i in range(20)))
    graphql(base, """mutation($repo: RepositorySelector!) { addDynamicPartition(repositorySelector: $repo,
        partitionsDefName: "datasets", partitionKey: "gappy") { __typename } }""", {"repo": REPO})
    assert wait_for_launch(base, {
        "selector": {**REPO, "jobName": "prepare_dataset"},
        "runConfigData": {"ops": {"dataset_snapshot": {"config": {"source_path": str(gappy)}}}},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "gappy"}]},
    }) == "FAILURE"
    analytics = ["provider_comparison", "calls_over_time", "failure_rates", "usage_summary"]
    assert wait_for_launch(base, {"selector": {**REPO, "jobName": "__ASSET_JOB",
                                               "assetSelection": [{"path": [a]} for a in analytics]}}) == "SUCCESS"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})

        page.goto(f"{base}/assets/sweep_report?partition=e2e", timeout=120_000)
        page.get_by_text("per_k", exact=True).first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        schema = page.inner_text("body")  # the Columns section: the column schema with descriptions
        assert "mean ARI between clusterings of half-samples at this K" in schema  # issue 15's criterion, described
        page.get_by_text("per_k", exact=True).first.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "sweep-report.png"))
        headers = table_headers(page, "per_k")
        assert headers[:4] == ["k", "status", "reason", "subsample_stability"], headers
        assert {"bic", "score", "silhouette", "stability_ari", "best"} <= set(headers), headers

        page.goto(f"{base}/assets/dataset_snapshot?view=checks&checkDetail=usable_rows", timeout=120_000)
        page.get_by_text("10 of 20 rows dropped (50% > 20%): is the text column the right one?").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(tmp_path / "failing-check.png"))
        text = page.inner_text("body")
        assert "This is a blocking asset check." in text and re.search(r"Evaluation result\s+Failed", text), text[:2000]
        assert re.search(r"Partition\s+gappy", text), text[:2000]

        page.goto(f"{base}/assets/provider_comparison", timeout=120_000)
        page.get_by_text("calls_chart", exact=True).first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        headers = table_headers(page, "table")
        assert headers[:5] == ["provider", "model", "calls", "succeeded", "failed"] and "p50_latency_ms" in headers, headers
        page.locator("tr", has=page.get_by_text("calls_chart", exact=True)).first.get_by_text("[Show Markdown]").click()
        page.locator("img[alt='calls per model']").wait_for(timeout=30_000)
        page.wait_for_timeout(500)
        page.screenshot(path=str(tmp_path / "analytics.png"))
        browser.close()
    for name in ("sweep-report.png", "failing-check.png", "analytics.png"):
        assert (tmp_path / name).stat().st_size > 20_000
        keep(tmp_path / name)


def study_loop_closes_on_the_daemon(base: str, tmp_path: Path, stub) -> None:  # noqa: ANN001 - the stub fixture
    """One prompt_run over two models that answer differently, launched as the UI does; the daemon's sensors then
    prepare, sweep, report and compare the replies without another launch, and study_comparison's page says the
    models answer differently."""
    from support import STUB_TOPICS, topic_corpus

    texts, labels = topic_corpus(per_topic=8)
    by_topic = {t: [x for x, label in zip(texts, labels) if label == t] for t in STUB_TOPICS}
    stub.faults.set(replies={"alpha": by_topic["cooking"], "beta": by_topic["astronomy"]})
    prompts = tmp_path / "study-prompts.txt"
    prompts.write_text("".join(f"Question {i}: what would you say?\n" for i in range(8)))
    graphql(base, """mutation($repo: RepositorySelector!) { addDynamicPartition(repositorySelector: $repo,
        partitionsDefName: "datasets", partitionKey: "study") { __typename } }""", {"repo": REPO})
    prompts_run = launch(base, {
        "selector": {**REPO, "jobName": "__ASSET_JOB", "assetSelection": [{"path": ["prompt_run"]}]},
        "runConfigData": {"ops": {"prompt_run": {"config": {
            "prompts_path": str(prompts), "provider": "openai-compatible", "model": "alpha", "other_models": ["beta"],
            "base_url": stub.base_url}}}},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "study"}]},
    })
    assert wait_for_run(base, prompts_run) == "SUCCESS"
    wait_for_comparison(base, "study", prompts_run)  # three sensor ticks and three runs, no launch of ours
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{base}/assets/study_comparison?partition=study", timeout=120_000)
        page.get_by_text("divergence", exact=True).first.wait_for(timeout=60_000)
        page.wait_for_timeout(1500)
        page.get_by_text("divergence", exact=True).first.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "study-comparison.png"))
        headers = table_headers(page, "divergence")
        text = page.inner_text("body")
        browser.close()
    assert headers == ["model_a", "model_b", "js_divergence", "reading"], headers
    assert "answer differently" in text and "Jensen-Shannon divergence 1.00 bits" in text, text[:3000]
    keep(tmp_path / "study-comparison.png")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
@pytest.mark.timeout(1200)  # about 6 min on a quiet machine, 10+ when 2 cores are shared
def test_dev_serves_the_asset_graph_runs_ui_sweeps_and_backfills_and_stops_cleanly(tmp_path, stub):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "STUDYLLM_DATABASE_URL"}
    env["STUDYLLM_HOME"] = str(home)
    # Runs launched from the UI embed through the loopback server instead of the local model.
    env.update(STUDYLLM_EMBED_PROVIDER="openai-compatible", STUDYLLM_EMBED_MODEL="stub-embedding",
               STUDYLLM_EMBED_BASE_URL=stub.base_url, OPENAI_COMPATIBLE_API_KEY=TEST_API_KEY)
    # The sensors and the report automation look every SENSOR_INTERVAL_S instead of 30 s: the test waits on
    # about ten of their ticks, up to 30 s each by default (the backfill daemon's 30 s loop is Dagster's own).
    env["STUDYLLM_SENSOR_INTERVAL_S"] = str(SENSOR_INTERVAL_S)
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
        keep(shot)

        prepare_from_the_ui(base, source)
        backfill_with_the_cli(base, env, source)
        ui_runs_respect_the_run_limits(base)
        recovery = cancel_midway_then_recover(base, env, stub)
        # The report and comparison follow the recovery, even when a report the automation asked for on the
        # cancelled run's K ran just before it (the recovery's K are newer than that report in the event log).
        wait_for_comparison(base, "e2e", recovery)
        wait_until_quiet(base)
        catalog_shows_the_k_axis(base, tmp_path)
        ui_shows_tables_checks_and_analytics(base, tmp_path)
        study_loop_closes_on_the_daemon(base, tmp_path, stub)
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
