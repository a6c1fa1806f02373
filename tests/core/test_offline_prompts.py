"""Trying `prompts run` offline, as the user guide shows: the extractive provider and the loopback server;
help lists exactly the providers that can chat (or embed); a provider that cannot chat records nothing."""

import json
import subprocess
import sys

import pytest
from sqlalchemy import create_engine, text

from studyllm_core.cli import build_parser
from studyllm_core.providers.registry import BUILTIN_PROVIDERS, CHAT_PROVIDERS, EMBEDDING_PROVIDERS, provider_class


def help_of(*command: str) -> str:
    parser = build_parser()
    sub = parser
    for name in command:
        sub = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction").choices[name]
    return " ".join(sub.format_help().split())


@pytest.mark.parametrize("operation, names", [("chat", CHAT_PROVIDERS), ("embed", EMBEDDING_PROVIDERS)])
def test_the_listed_providers_are_the_builtins_that_can(operation, names):
    assert sorted(names) == sorted(n for n in BUILTIN_PROVIDERS if provider_class(n).supports(operation))


def test_help_lists_the_providers_each_command_can_use():
    prompts = help_of("prompts", "run")
    assert "extractive (offline)" in prompts and "local" not in prompts
    for command in (("embed",), ("sweep",)):
        shown = help_of(*command)
        assert "local (offline)" in shown and "extractive (offline)" not in shown, command


def record_count(database_url: str) -> int:
    engine = create_engine(database_url)
    with engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM raw_calls")).scalar_one()
    engine.dispose()
    return count


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("What is a comet?\nName a colour.\n")
    return path


def test_a_provider_that_cannot_chat_is_refused_and_records_nothing(cli, db_env, prompts_file, database_url):
    result = cli(["prompts", "run", str(prompts_file), "--provider", "local", "--model", "all-MiniLM-L6-v2"], db_env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: the local provider cannot chat; use one that can: openai, azure, hyperbolic, openai-compatible, "
        "extractive (or a plugin)"
    ]
    assert record_count(database_url) == 0


def test_prompts_run_offline_with_the_extractive_provider(cli, db_env, prompts_file, tmp_path):
    out = tmp_path / "replies.jsonl"
    result = cli(["prompts", "run", str(prompts_file), "--provider", "extractive", "--model", "tfidf-centroid",
                  "--out", str(out), "--json"], db_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["succeeded"] == 2
    assert [json.loads(line)["text"] for line in out.read_text().splitlines()] == ["What is a comet?", "Name a colour."]


def test_prompts_run_against_the_loopback_server_started_as_documented(cli, db_env, prompts_file):
    server = subprocess.Popen(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "studyllm_core.testing.openai_server", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        base_url = server.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:"), server.stderr.read()
        result = cli(["prompts", "run", str(prompts_file), "--provider", "openai-compatible", "--base-url", base_url,
                      "--model", "stub-chat", "--samples", "2", "--json"], db_env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["succeeded"] == 4
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=10)
    assert stderr == ""  # no RuntimeWarning (nor anything else) at start or stop
