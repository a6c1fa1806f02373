"""A broken provider never multiplies spend: systemic faults stop `embed` and `prompts run` after a few
requests with one line naming the cause and the fix; only errors one input can cause split a batch."""

import json
import socket

import pytest
from sqlalchemy import text

from support import TEST_API_KEY

TEXTS = [f"spend bound text number {i}" for i in range(96)]
MAX_REQUESTS = 10


@pytest.fixture
def env(db_env, stub):
    return {**db_env, "OPENAI_COMPATIBLE_API_KEY": TEST_API_KEY, "OPENAI_COMPATIBLE_BASE_URL": stub.base_url}


def embed(cli, env, tmp_path, *extra):
    path = tmp_path / "t.txt"
    path.write_text("\n".join(TEXTS) + "\n")
    return cli(["embed", str(path), "--provider", "openai-compatible", "--model", "stub-embedding",
                "--batch-size", "8", "--concurrency", "4", "--json", *extra], env)


def sent_attempts(engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM raw_calls WHERE modality IN ('embedding', 'chat')")).scalar_one())


def assert_stopped(result, stub, engine, *words):
    assert result.returncode == 4, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert 1 <= stub.stats.requests_total <= MAX_REQUESTS
    assert sent_attempts(engine) == stub.stats.requests_total  # every request recorded, none unrecorded
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM embedding_vectors")).scalar_one() == 0


SCENARIOS = {
    # name: (fault settings, extra arguments, words the one error line must hold: cause ... fix)
    "html": ({"rate": 1.0, "kinds": ["html"]}, (), ("not JSON", "<!DOCTYPE html>", "login portal", "--base-url")),
    "dimensions rejected": ({"reject_dimensions": True}, ("--dimensions", "8"),
                            ("HTTP 400", "'dimensions' is refused for every input", "leave out --dimensions")),
    "nan": ({"rate": 1.0, "kinds": ["nan"]}, (), ("NaN", "times in a row", "check the server")),
    "zero vectors": ({"rate": 1.0, "kinds": ["zero_vectors"]}, (), ("all-zero", "check the server")),
    "dimensions ignored": ({"ignore_dimensions": True}, ("--dimensions", "8"),
                           ("16-d embeddings, 8 were requested", "ignores `dimensions`", "leave out --dimensions")),
    "out of quota": ({"rate": 1.0, "kinds": ["insufficient_quota"]}, (), ("insufficient_quota", "add credit")),
    "unexplained 400": ({"rate": 1.0, "kinds": ["bad_request"]}, (), ("HTTP 400", "3 different requests rejected")),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_systemic_fault_stops_embed_after_a_few_requests(cli, env, stub, engine, tmp_path, name):
    faults, extra, words = SCENARIOS[name]
    stub.faults.set(**faults)
    assert_stopped(embed(cli, env, tmp_path, *extra), stub, engine, *words)


@pytest.mark.slow
def test_refused_connection_stops_after_a_short_window(cli, env, stub, engine, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    result = embed(cli, env, tmp_path, "--base-url", url)
    assert result.returncode == 4 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"cannot connect to {url} (connection refused)" in result.stderr and "start the server or fix" in result.stderr
    assert sent_attempts(engine) <= MAX_REQUESTS


@pytest.mark.parametrize("url, words", [
    ("localhost:8000/v1", "has no http:// or https:// scheme; use e.g. http://localhost:8000/v1"),
    ("ftp://example.org/v1", "its scheme is ftp://"),
])
# A setting refused before any request is a configuration error: exit 2 (the user guide's table of exit codes).
def test_bad_urls_fail_before_any_request(cli, env, stub, engine, tmp_path, url, words):
    result = embed(cli, env, tmp_path, "--base-url", url)
    assert result.returncode == 2 and result.stderr.startswith("error: ") and words in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and stub.stats.requests_total == 0 and sent_attempts(engine) == 0


def test_transient_faults_still_retry_and_finish(cli, env, stub, engine, tmp_path):
    """The guard leaves transient faults to the retry policy: 503s and one NaN answer are retried, all embedded."""
    stub.faults.fail_next(2, "unavailable", endpoint="embeddings")
    stub.faults.fail_next(1, "nan", endpoint="embeddings")
    result = embed(cli, env, tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["embedded"] == len(TEXTS) and summary["failed"] == 0
    assert summary["api_requests"] == len(TEXTS) // 8 + 3


def test_only_errors_one_input_can_cause_split_a_batch(cli, env, stub, engine, tmp_path):
    """A context-length 400 naming the input halves its batch until the long text stands alone; the rest is embedded."""
    stub.faults.set(max_input_chars=40)
    TEXTS[5] = "a text far longer than the server accepts, over forty characters " + TEXTS[5]
    try:
        result = embed(cli, env, tmp_path)
    finally:
        TEXTS[5] = TEXTS[5].split("characters ", 1)[1]
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["failed"] == 1 and summary["embedded"] == len(TEXTS) - 1
    assert "row 5: BadRequestError" in result.stderr and "context_length_exceeded" in result.stderr
    # 12 batches, the bad one split 8 -> 4+4 -> 2+2 -> 1+1: 12 + 6 requests, one of each split level failing
    assert summary["api_requests"] == 12 + 6


def test_tokens_of_failed_attempts_are_recorded(cli, env, stub, engine, tmp_path):
    stub.faults.fail_next(1, "nan", endpoint="embeddings")
    assert embed(cli, env, tmp_path).returncode == 0
    with engine.connect() as conn:
        tokens = conn.execute(text("SELECT tokens_json FROM raw_calls WHERE status = 'failed'")).scalar_one()
    assert tokens["prompt_tokens"] == sum(len(t.split()) for t in TEXTS[:8])


def test_retries_say_what_why_and_when(cli, env, stub, tmp_path):
    stub.faults.fail_next(1, "unavailable", endpoint="embeddings")
    path = tmp_path / "t.txt"
    path.write_text("one\ntwo\nthree\n")
    result = cli(["-v", "embed", str(path), "--provider", "openai-compatible", "--model", "stub-embedding"], env)
    assert result.returncode == 0, result.stderr
    assert "retrying an embedding batch of 3 texts in " in result.stderr
    assert "(attempt 1 of 10 failed: openai-compatible returned HTTP 503" in result.stderr


@pytest.mark.parametrize("faults, words", [
    ({"rate": 1.0, "kinds": ["html"]}, ("not JSON", "login portal")),
    ({"rate": 1.0, "kinds": ["insufficient_quota"]}, ("insufficient_quota", "add credit")),
])
def test_systemic_fault_stops_prompts_run(cli, env, stub, engine, tmp_path, faults, words):
    stub.faults.set(**faults)
    path = tmp_path / "p.txt"
    path.write_text("\n".join(f"prompt {i}" for i in range(50)) + "\n")
    result = cli(["prompts", "run", str(path), "--provider", "openai-compatible", "--model", "stub-chat",
                  "--concurrency", "8", "--json"], env)
    assert result.returncode == 4 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    for word in words:
        assert word in result.stderr
    assert 1 <= stub.stats.requests_total <= MAX_REQUESTS and sent_attempts(engine) == stub.stats.requests_total
