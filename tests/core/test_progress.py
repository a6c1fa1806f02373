"""Long commands show progress on a terminal, and are quiet with --json (and when stderr is not a terminal)."""

import json

from support import TEST_API_KEY, run_on_terminal


def test_embed_shows_progress_on_a_terminal_and_is_quiet_with_json(db_env, stub, tmp_path, cli):
    env = {**db_env, "OPENAI_COMPATIBLE_API_KEY": TEST_API_KEY, "OPENAI_COMPATIBLE_BASE_URL": stub.base_url}
    path = tmp_path / "texts.txt"
    path.write_text("".join(f"text number {i}\n" for i in range(40)))
    args = ["embed", str(path), "--provider", "openai-compatible", "--model", "stub-embedding", "--batch-size", "8"]

    code, stdout, shown = run_on_terminal(args, env)
    assert code == 0, shown
    assert "embedding 40/40 (100.0%)" in shown and "texts 40" in stdout

    code, stdout, shown = run_on_terminal([*args, "--group", "again", "--json"], env)
    assert code == 0, shown
    assert shown == "" and json.loads(stdout)["texts"] == 40

    piped = cli([*args, "--group", "piped"], env)  # stderr a pipe: a log, CI
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
