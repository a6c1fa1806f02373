"""`studyllm dev` for real: the webserver answers GraphQL, the asset graph renders in headless
Chromium (Debian's package), and SIGTERM leaves nothing running."""

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

from support import STUDYLLM_EXE

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


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_dev_serves_the_asset_graph_and_stops_cleanly(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "STUDYLLM_DATABASE_URL"}
    env["STUDYLLM_HOME"] = str(home)
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
