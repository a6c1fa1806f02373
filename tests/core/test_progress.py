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


def test_export_and_legacy_import_show_progress_on_a_terminal(db_env, tmp_path, cli):
    import sqlite3

    v1 = tmp_path / "v1.db"
    with sqlite3.connect(v1) as conn:
        conn.execute("CREATE TABLE inference_runs (id INTEGER PRIMARY KEY, prompt TEXT, response TEXT, provider TEXT, "
                     "tokens INTEGER, latency_ms FLOAT, metadata TEXT, batch_id TEXT, created_at DATETIME)")
        conn.executemany("INSERT INTO inference_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (i, f"p{i}", f"r{i}", "openai", i, 1.5 * i, json.dumps({"model": "m"}), "b", "2024-01-01 10:00:00")
            for i in range(1, 51)])
    code, stdout, shown = run_on_terminal(["import-legacy", f"sqlite:///{v1}"], db_env)
    assert code == 0, shown
    assert "importing v1 rows 50/50 (100.0%)" in shown
    group = str(json.loads(cli(["groups", "--type", "dataset", "--json"], db_env).stdout)["groups"][0]["id"])
    code, _, shown = run_on_terminal(["export", group, "--format", "csv", "--out", str(tmp_path / "x")], db_env)
    assert code == 0, shown
    assert "exporting calls 50/50 (100.0%)" in shown
    code, _, shown = run_on_terminal(["export", group, "--out", str(tmp_path / "y"), "--json"], db_env)
    assert code == 0 and shown == "", shown
