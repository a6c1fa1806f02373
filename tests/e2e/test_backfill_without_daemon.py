"""`studyllm backfill` against a Dagster webserver whose daemon is not running: one line that says so
and how to start it, and nothing queued."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from studyllm_core.db.engine import dispose_engines, open_database
from studyllm_core.db.server import stop_embedded
from studyllm_core.services.datasets import DatasetRegistry, DatasetSource
from studyllm_pipeline.instance import prepare_dagster_home
from support import STUDYLLM_EXE

pytestmark = pytest.mark.slow
WEBSERVER = str(Path(sys.executable).with_name("dagster-webserver"))


def test_backfill_without_a_daemon_says_so_and_queues_nothing(tmp_path, monkeypatch):
    from test_dev_ui import free_port, wait_for

    monkeypatch.delenv("STUDYLLM_DATABASE_URL", raising=False)
    monkeypatch.setenv("STUDYLLM_HOME", str(tmp_path / "home"))
    home, _, dagster_env = prepare_dagster_home()
    for key, value in dagster_env.items():
        monkeypatch.setenv(key, value)
    path = tmp_path / "five.csv"
    path.write_text("text\n" + "".join(f"text number {i}\n" for i in range(5)))
    registry = DatasetRegistry(open_database())
    registry.register(DatasetSource(name="five", path=str(path)))

    port = free_port()
    log = (tmp_path / "webserver.log").open("w")
    server = subprocess.Popen([WEBSERVER, "-w", str(home / "workspace.yaml"), "-p", str(port)],
                              env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/server_info", 180, server, tmp_path / "webserver.log")
        result = subprocess.run([STUDYLLM_EXE, "backfill", "five", "--k-min", "2", "--k-max", "3", "--url", base],
                                env=dict(os.environ), capture_output=True, text=True, timeout=120)
        assert result.returncode != 0
        assert result.stderr.strip().splitlines() == [
            "error: the Dagster daemon is not running (never seen), so nothing would run the backfill: start "
            "`studyllm dev` (or `dagster-daemon run` in a deployment)"
        ]
        backfills = httpx.post(f"{base}/graphql", json={"query": "{ partitionBackfillsOrError { ... on PartitionBackfills { results { id } } } }"},
                               timeout=60).json()["data"]["partitionBackfillsOrError"]["results"]
        assert backfills == []
    finally:
        server.terminate()
        server.wait(60)
        log.close()
        dispose_engines()
        stop_embedded(tmp_path / "home" / "pg")
