"""A recognisable fake key, used in runs that include failures, must appear nowhere we write."""

import subprocess
from pathlib import Path

from support import STUDYLLM_EXE, pg_dump

FAKE_KEY = "sk-FAKE-LEAKCHECK-7f3a9c2e4b1d8a6f"


def test_fake_key_never_leaks_into_database_logs_or_output(db_env, stub, tmp_path):
    home = Path(db_env["STUDYLLM_HOME"])
    env = {**db_env, "OPENAI_COMPATIBLE_API_KEY": FAKE_KEY, "OPENAI_API_KEY": FAKE_KEY, "STUDYLLM_LOG_LEVEL": "DEBUG"}
    texts = tmp_path / "t.txt"
    texts.write_text("\n".join(f"text {i}" for i in range(50)) + f"\na text that pastes the key {FAKE_KEY}\n")
    outputs = []

    # 1. The server accepts the key, but fails some requests along the way.
    stub.faults.set(valid_keys=[FAKE_KEY])
    stub.faults.fail_next(2, "server_error")
    stub.faults.fail_next(1, "rate_limit")
    base = ["--provider", "openai-compatible", "--base-url", stub.base_url, "--json"]
    for args in (
        ["embed", str(texts), "--model", "stub-embedding", "--batch-size", "8", *base],
        ["prompts", "run", str(texts), "--model", "stub-chat", *base],
    ):
        result = subprocess.run([STUDYLLM_EXE, "-vv", *args], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout + result.stderr)

    # 2. The key is revoked: the 401 body echoes the key it received.
    stub.faults.set(valid_keys=["sk-another-valid-key-000000"])
    for provider in ("openai-compatible", "openai"):
        result = subprocess.run(
            [STUDYLLM_EXE, "-vv", "embed", str(texts), "--provider", provider, "--base-url", stub.base_url,
             "--model", "other-model", "--json"],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert result.returncode != 0 and "401" in result.stderr
        outputs.append(result.stdout + result.stderr)

    assert stub.stats.snapshot()["faults_injected"]  # the runs really went through failures
    for output in outputs:
        assert FAKE_KEY not in output
    dump = pg_dump(db_env["STUDYLLM_DATABASE_URL"])
    assert "raw_calls" in dump and "error_json" in dump
    assert FAKE_KEY not in dump
    logs = list((home / "logs").glob("*.log*"))
    assert logs and all(FAKE_KEY not in log.read_text() for log in logs)


def test_a_placeholder_key_never_rewrites_data_and_key_like_text_is_kept(db_env, stub, tmp_path):
    """OPENAI_COMPATIBLE_API_KEY=ollama (Ollama's placeholder): every "ollama" in prompts, replies, texts and
    model names is stored as written; key-shaped strings matching no configured secret are stored verbatim."""
    env = {**db_env, "OPENAI_COMPATIBLE_API_KEY": "ollama"}
    stub.faults.set(valid_keys=["ollama"])
    shaped = "see sk-abcdefghijklmnop1234 and Bearer abcdefghijklmnop and api_key=abcdefghijklmnop"
    texts = tmp_path / "t.txt"
    texts.write_text(f"ollama runs llama3 locally\nwhy do people like ollama\n{shaped}\n")
    base = ["--provider", "openai-compatible", "--base-url", stub.base_url, "--json"]
    for args in (["embed", str(texts), "--model", "ollama-embed", *base],
                 ["prompts", "run", str(texts), "--model", "ollama/llama3", *base, "--out", str(tmp_path / "o.jsonl")]):
        result = subprocess.run([STUDYLLM_EXE, *args], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    dump = pg_dump(db_env["STUDYLLM_DATABASE_URL"])
    assert "***" not in dump
    assert "ollama runs llama3 locally" in dump and "stub reply: why do people like ollama" in dump
    assert "ollama/llama3" in dump and "ollama-embed" in dump
    assert shaped in dump  # in embedding_vectors.text and in the recorded requests
    written = (tmp_path / "o.jsonl").read_text()
    assert "stub reply: ollama runs llama3 locally" in written and shaped in written and "***" not in written


def test_a_configured_key_pasted_into_a_prompt_is_masked_in_the_out_file(db_env, stub, tmp_path):
    env = {**db_env, "OPENAI_COMPATIBLE_API_KEY": FAKE_KEY}
    stub.faults.set(valid_keys=[FAKE_KEY])
    prompts = tmp_path / "p.txt"
    prompts.write_text(f"what does {FAKE_KEY} unlock\n")
    out = tmp_path / "o.jsonl"
    result = subprocess.run(
        [STUDYLLM_EXE, "prompts", "run", str(prompts), "--provider", "openai-compatible", "--base-url", stub.base_url,
         "--model", "stub-chat", "--out", str(out)], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    written = out.read_text()
    assert FAKE_KEY not in written and "what does *** unlock" in written
