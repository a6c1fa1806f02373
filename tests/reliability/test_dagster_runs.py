"""Dagster runs on the same data: concurrent runs share the work, a killed run resumes, keys never leak."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import yaml
from sqlalchemy import text

from studyllm_pipeline.definitions import SWEEP_ASSETS
from studyllm_pipeline.jobs import PREPARE
from studyllm_pipeline.partitions import datasets
from studyllm_pipeline.resources import EmbedderResource
from support import TEST_API_KEY, dagster_instance_config, pg_dump

SCRIPT = Path(__file__).with_name("materialize_prepare.py")
FAKE_KEY = "sk-FAKE-DAGSTERLEAK-5d1e9b7c3a2f"


@pytest.fixture
def run_env(db_env, dagster_database_url, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = {**dagster_instance_config(dagster_database_url), "telemetry": {"enabled": False}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return {**db_env, "DAGSTER_HOME": str(home), "OPENAI_COMPATIBLE_API_KEY": TEST_API_KEY}


def write_texts(path: Path, n: int, tag: str) -> Path:
    pd.DataFrame({"text": [f"{tag} text {i}: item {i * 13 % 101}" for i in range(n)]}).to_csv(path, index=False)
    return path


def start(env, dataset, source, stub):
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), dataset, str(source), stub.base_url],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def count(engine, sql):
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_two_runs_on_the_same_data_send_each_text_once(run_env, stub, tmp_path, engine):
    stub.faults.set(latency_s=0.02)
    source = write_texts(tmp_path / "shared.csv", 2_000, "shared")
    runs = [start(run_env, "shared", source, stub) for _ in range(2)]
    outputs = [r.communicate(timeout=300) for r in runs]
    assert all(r.returncode == 0 for r in runs), outputs
    counts = stub.stats.snapshot()["embedding_text_counts"]
    assert len(counts) == 2_000 and max(c["total"] for c in counts.values()) == 1
    assert count(engine, "SELECT count(*) FROM embedding_vectors") == 2_000
    assert count(engine, "SELECT count(*) FROM (SELECT request_hash FROM embedding_vectors GROUP BY 1 HAVING count(*) > 1) d") == 0


def test_killed_run_resumes_without_paying_twice(run_env, stub, tmp_path, engine):
    stub.faults.set(latency_s=0.05)
    source = write_texts(tmp_path / "big.csv", 20_000, "killed")
    victim = start(run_env, "killed", source, stub)
    deadline = time.monotonic() + 180
    while count(engine, "SELECT count(*) FROM embedding_vectors") < 2_000:
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(30)
    with engine.connect() as conn:
        stored = {row[0] for row in conn.execute(text("SELECT text FROM embedding_vectors"))}
    assert len(stored) < 20_000

    rerun = start(run_env, "killed", source, stub)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0 and "success" in out, err[-2000:]
    counts = stub.stats.snapshot()["embedding_text_counts"]
    assert all(counts[t]["total"] == 1 for t in stored)
    assert count(engine, "SELECT count(*) FROM embedding_vectors") == 20_000
    assert count(
        engine,
        "SELECT count(*) FROM embedding_vectors v JOIN raw_calls r ON r.id = v.raw_call_id WHERE r.status <> 'success'",
    ) == 0


def test_key_never_reaches_the_event_log_or_either_database(instance, resources, stub, tmp_path, monkeypatch, db_env, dagster_database_url):
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    stub.faults.set(valid_keys=[FAKE_KEY])
    stub.faults.fail_next(2, "server_error")
    source = write_texts(tmp_path / "secret.csv", 200, "secret")
    instance.add_dynamic_partitions(datasets.name, ["secret"])
    keyed = {**resources, "embedder": EmbedderResource(provider="openai", model="stub-embedding", base_url=stub.base_url)}
    config = {"ops": {"dataset_snapshot": {"config": {"source_path": str(source)}}}}
    ok = dg.materialize(SWEEP_ASSETS, selection=PREPARE, partition_key="secret", instance=instance, resources=keyed, run_config=config)
    assert ok.success
    stub.faults.set(valid_keys=["sk-a-different-valid-key-0000"])  # revoked: the 401 body echoes the key
    write_texts(source, 50, "after-revocation")
    failed = dg.materialize(
        SWEEP_ASSETS, selection=PREPARE, partition_key="secret", instance=instance, resources=keyed, run_config=config,
        raise_on_error=False,
    )
    assert not failed.success
    logs = [str(entry) for run_id in (ok.run_id, failed.run_id) for entry in instance.all_logs(run_id)]
    assert any("401" in line for line in logs)
    assert not any(FAKE_KEY in line for line in logs)
    for url in (db_env["STUDYLLM_DATABASE_URL"], dagster_database_url):
        dump = pg_dump(url)
        assert FAKE_KEY not in dump
