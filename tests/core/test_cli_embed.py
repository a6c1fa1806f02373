"""`studyllm embed` end to end: real console script, real HTTP to the loopback server, real database."""

import json
import subprocess

import numpy as np
import pytest

from support import STUDYLLM_EXE, TEST_API_KEY


@pytest.fixture
def env(db_env, stub):
    return {**db_env, "OPENAI_COMPATIBLE_API_KEY": TEST_API_KEY, "OPENAI_COMPATIBLE_BASE_URL": stub.base_url}


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "texts.csv"
    rows = [f"sentence {i} about topic {i % 7}" for i in range(300)] + ["sentence 3 about topic 3"]  # one duplicate
    path.write_text("id,text\n" + "".join(f"{i},{t}\n" for i, t in enumerate(rows)))
    return path


def embed_args(path, out, *extra):
    return ["embed", str(path), "--provider", "openai-compatible", "--model", "stub-embedding",
            "--batch-size", "32", "--concurrency", "4", "--out", str(out), "--json", *extra]


def test_embed_then_cached_rerun_makes_zero_requests(cli, env, corpus, tmp_path, stub):
    first = cli(embed_args(corpus, tmp_path / "a.npy", "--group", "corpus-v1"), env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert {k: summary[k] for k in ("texts", "unique", "cached", "embedded", "failed")} == {
        "texts": 301, "unique": 300, "cached": 0, "embedded": 300, "failed": 0}
    assert summary["api_requests"] == 10 and summary["group_id"] is not None
    requests = stub.stats.requests_total

    second = cli(embed_args(corpus, tmp_path / "b.npy"), env)
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["api_requests"] == 0 and json.loads(second.stdout)["cached"] == 300
    assert stub.stats.requests_total == requests
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (301, 16) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


def test_two_concurrent_processes_send_each_text_at_most_once(env, corpus, tmp_path, stub):
    # Slow answers and small batches (38 batches of 8, 4 at a time per process): one process alone
    # needs about ten rounds of 0.3 s, so the second one starts while the first is still embedding.
    stub.faults.set(latency_s=0.3)
    procs = [
        subprocess.Popen([STUDYLLM_EXE, *embed_args(corpus, tmp_path / f"{i}.npy", "--batch-size", "8")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    counts = stub.stats.snapshot()["embedding_text_counts"]
    assert len(counts) == 300 and max(c["total"] for c in counts.values()) == 1
    summaries = [json.loads(out) for out, _ in outputs]
    assert sum(s["embedded"] for s in summaries) == 300
    # The overlap was real: both processes sent batches, and at some moment more requests were in
    # flight than one process's --concurrency allows.
    assert all(s["embedded"] > 0 for s in summaries), summaries
    assert stub.stats.requests_in_flight_peak > 4
    np.testing.assert_array_equal(np.load(tmp_path / "0.npy"), np.load(tmp_path / "1.npy"))


@pytest.mark.parametrize(
    "setup, args, message",
    [
        ("missing_column", ["--text-column", "body"], "has no column 'body'"),
        ("empty_file", [], "is empty"),
        ("header_only", [], "has a header but no rows"),
        ("unknown_provider", ["--provider", "nosuch"], "unknown provider 'nosuch'"),
        ("missing_key", ["--provider", "openai"], "needs OPENAI_API_KEY"),
    ],
)
def test_fatal_problems_exit_non_zero_before_any_request(cli, env, corpus, tmp_path, stub, setup, args, message):
    path = corpus
    if setup == "empty_file":
        path = tmp_path / "empty.csv"
        path.write_text("")
    elif setup == "header_only":
        path = tmp_path / "header.csv"
        path.write_text("id,text\n")
    env = {k: v for k, v in env.items() if k != "OPENAI_API_KEY"}
    argv = embed_args(path, tmp_path / "x.npy")
    if args[:1] == ["--provider"]:
        argv[argv.index("--provider") + 1] = args[1]
        argv += ["--base-url", stub.base_url]
    else:
        argv += args
    result = cli(argv, env)
    assert result.returncode != 0
    assert message in result.stderr and result.stderr.startswith("error: ")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert stub.stats.requests_total == 0


def test_row_problems_are_skipped_and_counted(cli, env, tmp_path, stub):
    path = tmp_path / "rows.txt"
    path.write_bytes(b"good one\n\n   \nnul\x00inside\nbad \xff\xfe bytes\n" + b"y" * 1_000_000 + b"\ngood two\n")
    result = cli(["embed", str(path), "--provider", "openai-compatible", "--model", "stub-embedding", "--json"], env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["texts"] == 7 and summary["failed"] == 5 and summary["embedded"] == 2
    assert "row 4: invalid UTF-8" in result.stderr and "exceeds the limit" in result.stderr
    assert "row 3: invalid text: a NUL character" in result.stderr
