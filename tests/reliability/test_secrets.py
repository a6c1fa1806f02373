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
