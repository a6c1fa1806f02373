"""kill -9 in the middle of `studyllm embed`: the re-run completes and pays only for what was lost."""

import json
import os
import signal
import subprocess
import time

import pytest
from sqlalchemy import text

from support import STUDYLLM_EXE, TEST_API_KEY

N_TEXTS = 20_000


def _count(engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_kill_9_mid_embed_then_resume(engine, db_env, stub, tmp_path):
    stub.faults.set(latency_s=0.05)
    texts = [f"resume text {i}: a sentence about item {i * 31 % 997}" for i in range(N_TEXTS)]
    path = tmp_path / "texts.txt"
    path.write_text("\n".join(texts) + "\n")
    env = {**db_env, "OPENAI_COMPATIBLE_API_KEY": TEST_API_KEY}
    args = [STUDYLLM_EXE, "embed", str(path), "--provider", "openai-compatible", "--base-url", stub.base_url,
            "--model", "stub-embedding", "--batch-size", "128", "--concurrency", "4", "--json"]

    victim = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _count(engine, "SELECT count(*) FROM embedding_vectors") < 3_000:
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the first run stored nothing"
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(30)

    with engine.connect() as conn:
        stored_before = {row[0] for row in conn.execute(text("SELECT text FROM embedding_vectors"))}
    assert 3_000 <= len(stored_before) < N_TEXTS  # really killed mid-run

    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["failed"] == 0 and summary["cached"] + summary["embedded"] == N_TEXTS
    assert summary["cached"] >= len(stored_before)

    counts = stub.stats.snapshot()["embedding_text_counts"]
    assert all(counts[t]["total"] == 1 for t in stored_before)  # nothing stored was sent again
    resent = [t for t in texts if counts[t]["total"] > 1]
    # at most the batches sent or answered and not yet stored at the kill: 2 x concurrency (answers are
    # written behind the requests, bounded by UNSTORED_PER_REQUEST)
    assert len(resent) <= 2 * 4 * 128

    # Every vector has its successful raw call; nothing is half-written; no lease outlives its owner.
    assert _count(engine, "SELECT count(*) FROM embedding_vectors") == N_TEXTS
    assert _count(
        engine,
        "SELECT count(*) FROM embedding_vectors v LEFT JOIN raw_calls r ON r.id = v.raw_call_id "
        "WHERE r.id IS NULL OR r.status <> 'success' OR r.modality <> 'embedding'",
    ) == 0
    assert _count(engine, "SELECT count(*) FROM embedding_leases") == 0


@pytest.mark.slow
def test_kill_9_mid_prompts_run_then_resume_with_the_same_group(engine, db_env, stub, tmp_path):
    """A re-run with the same --group sends only the (prompt, sample) pairs without a recorded success."""
    stub.faults.set(latency_s=0.02)
    n_prompts, samples = 150, 2
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(f"question {i}: what about item {i}?" for i in range(n_prompts)) + "\n")
    env = {**db_env, "OPENAI_COMPATIBLE_API_KEY": TEST_API_KEY}
    args = [STUDYLLM_EXE, "prompts", "run", str(path), "--provider", "openai-compatible", "--base-url", stub.base_url,
            "--model", "stub-chat", "--samples", str(samples), "--concurrency", "4", "--group", "resumable", "--json"]
    ok = "SELECT count(DISTINCT request_hash) FROM raw_calls WHERE status = 'success' AND modality = 'chat'"

    victim = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _count(engine, ok) < 100:
        assert victim.poll() is None, victim.communicate()
        assert time.monotonic() < deadline, "the first run answered nothing"
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(30)
    answered = _count(engine, ok)
    assert 100 <= answered < n_prompts * samples  # really killed mid-run

    stub.stats.reset()
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["succeeded"] == n_prompts * samples and summary["skipped"] == answered
    assert summary["api_requests"] == stub.stats.requests_total == n_prompts * samples - answered
    assert f"skipped {answered:,} of {n_prompts * samples:,} calls already answered" in rerun.stderr
    # Every (prompt, sample) has exactly one success in the group now.
    assert _count(engine, ok) == n_prompts * samples
    assert _count(engine, "SELECT count(*) FROM (SELECT r.request_hash FROM raw_calls r JOIN group_members m "
                          "ON m.call_id = r.id JOIN groups g ON g.id = m.group_id WHERE g.name = 'resumable' "
                          "AND r.status = 'success' GROUP BY r.request_hash HAVING count(*) > 1) d") == 0
