"""`studyllm prompts run` end to end: real console script, real HTTP to the loopback server, real database."""

import json

import pytest
from sqlalchemy import create_engine, text

from support import TEST_API_KEY, WRONG_API_KEY


@pytest.fixture
def env(db_env, stub):
    return {**db_env, "OPENAI_COMPATIBLE_API_KEY": TEST_API_KEY, "OPENAI_COMPATIBLE_BASE_URL": stub.base_url}


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text('id,question\n1,What is k-means?\n2,\n3,"Name a  colour, please"\n4,What is k-means?\n')
    return path


def run_args(path, *extra):
    return ["prompts", "run", str(path), "--provider", "openai-compatible", "--model", "stub-chat",
            "--text-column", "question", "--json", *extra]


def test_run_samples_every_prompt_and_records_every_call(cli, env, prompts_file, tmp_path, stub, database_url):
    out = tmp_path / "replies.jsonl"
    result = cli(run_args(prompts_file, "--samples", "2", "--temperature", "0.7", "--group", "colours",
                          "--template", "Briefly: {prompt}", "--out", str(out)), env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("calls", "succeeded", "failed", "api_requests")} == {
        "calls": 8, "succeeded": 6, "failed": 2, "api_requests": 4}  # row 4 repeats row 1: shared calls
    assert summary["group_id"] is not None and stub.stats.requests_total == 4
    assert "row 1 sample 0: empty or whitespace-only" in result.stderr
    replies = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["row"], r["sample"]) for r in replies] == [(i, s) for i in range(4) for s in range(2)]
    assert replies[4]["text"] == "stub reply: Briefly: Name a colour, please"
    engine = create_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT r.status, r.request_json->>'original_prompt', r.metadata_json->>'sample_index' FROM raw_calls r "
            "JOIN group_members m ON m.call_id = r.id JOIN groups g ON g.id = m.group_id "
            "WHERE g.name = 'colours' AND g.group_type = 'batch' ORDER BY r.id"
        )).all()
    engine.dispose()
    assert sorted(status for status, _, _ in rows) == ["failed", "failed"] + ["success"] * 4
    assert {prompt for _, prompt, _ in rows} == {"", "What is k-means?", "Name a  colour, please"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--text-column", "body"], "has no column 'body'"),
        (["--provider", "nosuch"], "unknown provider 'nosuch'"),
        (["--provider", "openai"], "needs OPENAI_API_KEY"),
        (["--template", "no placeholder"], "has no {prompt} placeholder"),
    ],
)
def test_fatal_problems_exit_non_zero_before_any_request(cli, env, prompts_file, stub, args, message):
    env = {k: v for k, v in env.items() if k != "OPENAI_API_KEY"}
    argv = run_args(prompts_file)
    if args[0] == "--provider":
        argv[argv.index("--provider") + 1] = args[1]
        argv += ["--base-url", stub.base_url]
    else:
        argv += args
    result = cli(argv, env)
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert stub.stats.requests_total == 0


def test_a_bad_key_stops_the_run_after_one_request(cli, env, prompts_file, stub):
    result = cli(run_args(prompts_file), {**env, "OPENAI_COMPATIBLE_API_KEY": WRONG_API_KEY})
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert WRONG_API_KEY not in result.stderr + result.stdout
    assert stub.stats.requests_total == 1
