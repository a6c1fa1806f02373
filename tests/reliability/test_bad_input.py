"""The bad-input matrix of tests/reliability/README.md: one test per row."""

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from studyllm_core.algorithms import pca_svd_project
from studyllm_core.db.engine import make_engine
from studyllm_core.db.migrate import upgrade
from studyllm_core.db.server import start_embedded, stop_embedded
from support import STUDYLLM_EXE, TEST_API_KEY


@pytest.fixture
def env(db_env, stub):
    return {**db_env, "OPENAI_COMPATIBLE_API_KEY": TEST_API_KEY, "OPENAI_COMPATIBLE_BASE_URL": stub.base_url}


def embed(cli, env, path, *extra):
    return cli(["embed", str(path), "--provider", "openai-compatible", "--model", "stub-embedding", "--json", *extra], env)


def assert_fatal(result, message, stub):
    assert result.returncode != 0
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert stub.stats.requests_total == 0


def assert_row_failed(result, row, reason):
    assert result.returncode == 0, result.stderr
    assert f"row {row}: {reason}" in result.stderr


def count(engine, sql):
    with engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_empty_file(cli, env, stub, tmp_path):
    (tmp_path / "e.csv").write_text("")
    assert_fatal(embed(cli, env, tmp_path / "e.csv"), "is empty", stub)


def test_header_only(cli, env, stub, tmp_path):
    (tmp_path / "h.csv").write_text("id,text\n")
    assert_fatal(embed(cli, env, tmp_path / "h.csv"), "has a header but no rows", stub)


def test_empty_and_whitespace_texts(cli, env, stub, tmp_path, engine):
    (tmp_path / "w.txt").write_text("ok\n\n \t \nfine\n")
    result = embed(cli, env, tmp_path / "w.txt")
    assert_row_failed(result, 1, "empty or whitespace-only text")
    assert_row_failed(result, 2, "empty or whitespace-only text")
    assert json.loads(result.stdout)["failed"] == 2 and json.loads(result.stdout)["embedded"] == 2
    assert count(engine, "SELECT count(*) FROM raw_calls WHERE error_json->>'type' = 'invalid_input'") == 2


def test_nul_bytes(cli, env, stub, tmp_path, engine):
    """A NUL is refused per row, never removed: the text is not what the file says without it."""
    (tmp_path / "n.txt").write_bytes(b"nul\x00inside\nnulinside\n")
    result = embed(cli, env, tmp_path / "n.txt", "--out", str(tmp_path / "v.npy"))
    assert_row_failed(result, 0, "invalid text: a NUL character at character 3")
    summary = json.loads(result.stdout)
    assert summary["failed"] == 1 and summary["embedded"] == 1
    vectors = np.load(tmp_path / "v.npy")
    assert np.isnan(vectors[0]).all() and not np.isnan(vectors[1]).any()
    assert stub.stats.snapshot()["embedding_texts_sent"] == 1
    assert count(engine, "SELECT count(*) FROM raw_calls WHERE error_json->>'type' = 'invalid_input'") == 1


def test_lone_surrogate_in_jsonl(cli, env, stub, tmp_path, engine):
    """`"\\ud800"` in a JSONL string: that row fails with a warning and a recorded attempt, in embed and prompts run."""
    (tmp_path / "s.jsonl").write_text('{"text": "fine one"}\n{"text": "broken \\ud800 here"}\n{"text": "fine two"}\n')
    result = embed(cli, env, tmp_path / "s.jsonl")
    assert_row_failed(result, 1, "invalid text: a lone surrogate (\\ud800) at character 7")
    assert json.loads(result.stdout)["embedded"] == 2 and "Traceback" not in result.stderr
    prompts = cli(["prompts", "run", str(tmp_path / "s.jsonl"), "--provider", "openai-compatible", "--model", "stub-chat",
                   "--json"], env)
    assert prompts.returncode == 0 and "Traceback" not in prompts.stderr, prompts.stderr
    assert "row 1: invalid text: a lone surrogate" in prompts.stderr
    assert json.loads(prompts.stdout)["succeeded"] == 2
    assert count(engine, "SELECT count(*) FROM raw_calls WHERE error_json->>'type' = 'invalid_input'") == 2


def test_unclosed_quote_in_csv(cli, env, stub, tmp_path):
    """One unclosed quote must not turn 1,000 rows into a few texts: the read stops at the row it opens."""
    rows = ["id,text"] + [f"{i},row number {i}" for i in range(1000)]
    rows[4] = '3,"unclosed quote'
    (tmp_path / "q.csv").write_text("\n".join(rows) + "\n")
    assert_fatal(embed(cli, env, tmp_path / "q.csv"), "q.csv line 5: broken CSV quoting", stub)
    rows[500] = '499,"a quoted, fine" text after the quote'
    rows[4] = "3,row number 3"
    (tmp_path / "q.csv").write_text("\n".join(rows) + "\n")
    assert_fatal(embed(cli, env, tmp_path / "q.csv"), "q.csv line 501: broken CSV quoting", stub)
    # A quote opened on line 102 and closed cleanly on line 401 is valid CSV to a strict parser: the
    # 298 rows between would become one text. The rows they look like give it away.
    rows[500] = "499,row number 499"
    rows[102], rows[401] = '101,"opens here', '400,closes" here'.replace('" here', '"')
    (tmp_path / "q.csv").write_text("\n".join(rows) + "\n")
    assert_fatal(embed(cli, env, tmp_path / "q.csv"), "q.csv line 103: a quoted text runs over 300 lines", stub)


def test_duplicated_header(cli, env, stub, tmp_path):
    (tmp_path / "d.csv").write_text("text,text\nfirst,second\n")
    assert_fatal(embed(cli, env, tmp_path / "d.csv"), "names the column 'text' 2 times (columns 1, 2)", stub)


def test_more_cells_than_the_header(cli, env, stub, tmp_path):
    (tmp_path / "t.tsv").write_text("label\ttext\na\tfine\nb\ta text\twith a tab\n")
    assert_fatal(embed(cli, env, tmp_path / "t.tsv"), "t.tsv line 3 has 3 cells but the header names 2 columns", stub)


def test_nested_values(cli, env, stub, tmp_path):
    (tmp_path / "n.jsonl").write_text('{"text": "fine"}\n{"text": {"inner": "x"}}\n')
    assert_fatal(embed(cli, env, tmp_path / "n.jsonl"), "n.jsonl line 2: the text column 'text' holds a JSON object", stub)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": pa.array([b"\xff\xfe", b"ok"])}), tmp_path / "b.parquet")
    assert_fatal(embed(cli, env, tmp_path / "b.parquet"), "the text column 'text' is of Parquet type binary", stub)


def test_byte_order_mark(cli, env, stub, tmp_path):
    (tmp_path / "excel.csv").write_bytes(b"\xef\xbb\xbftext,label\nhello,1\n")
    result = embed(cli, env, tmp_path / "excel.csv")
    assert result.returncode == 0 and json.loads(result.stdout)["embedded"] == 1, result.stderr
    assert stub.stats.text_count("hello")["total"] == 1


def test_headerless_label_tab_text(cli, env, stub, tmp_path):
    (tmp_path / "h.tsv").write_text("sports\tThe match ended two to one after extra time.\nscience\tA comet was seen.\n")
    assert_fatal(embed(cli, env, tmp_path / "h.tsv"), "use --no-header and name the text column by position "
                                                      "(--text-column 1)", stub)
    result = embed(cli, env, tmp_path / "h.tsv", "--no-header", "--text-column", "1")
    assert result.returncode == 0 and json.loads(result.stdout)["embedded"] == 2, result.stderr


def test_invalid_utf8(cli, env, stub, tmp_path):
    (tmp_path / "u.csv").write_bytes(b"text\ngood\nbad \xff\xfe bytes\nalso good\n")
    result = embed(cli, env, tmp_path / "u.csv")
    assert_row_failed(result, 1, "invalid UTF-8 in the input")
    assert json.loads(result.stdout)["embedded"] == 2


def test_one_megabyte_line(cli, env, stub, tmp_path):
    (tmp_path / "big.csv").write_text("text\nshort one\n" + "x" * 1_000_000 + "\n")
    result = embed(cli, env, tmp_path / "big.csv")
    assert_row_failed(result, 1, "text of 1,000,000 characters exceeds the limit of 50,000")
    assert stub.stats.snapshot()["embedding_texts_sent"] == 1


def test_duplicated_texts(cli, env, stub, tmp_path):
    (tmp_path / "d.txt").write_text("same\nsame\nother\nsame\n")
    result = embed(cli, env, tmp_path / "d.txt", "--out", str(tmp_path / "v.npy"))
    assert json.loads(result.stdout)["unique"] == 2
    vectors = np.load(tmp_path / "v.npy")
    np.testing.assert_array_equal(vectors[0], vectors[3])
    assert stub.stats.text_count("same")["total"] == 1


@pytest.mark.parametrize("column, message", [("body", "has no column 'body'"), ("7", "column index 7 is out of range")])
def test_wrong_column(cli, env, stub, tmp_path, column, message):
    (tmp_path / "c.csv").write_text("id,text\n1,hello\n")
    assert_fatal(embed(cli, env, tmp_path / "c.csv", "--text-column", column), message, stub)


def sweep(cli, env, tmp_path, *extra):
    (tmp_path / "s.txt").write_text("\n".join(f"text {i}" for i in range(5)) + "\n")
    return cli(["sweep", str(tmp_path / "s.txt"), "--embed-provider", "openai-compatible", "--embed-model", "stub-embedding",
                "--out", str(tmp_path / "out"), *extra], env)


def test_k_larger_than_n(cli, env, stub, tmp_path):
    assert_fatal(sweep(cli, env, tmp_path, "--k-min", "2", "--k-max", "9"),
                 "k_max=9 exceeds the 5 usable texts: use k_max <= 5", stub)


def test_k_below_two(cli, env, stub, tmp_path):
    assert_fatal(sweep(cli, env, tmp_path, "--k-min", "1", "--k-max", "3"),
                 "k_min must be an integer >= 2, got 1.", stub)


def test_pca_dim_larger_than_d(cli, env, stub, tmp_path):
    with pytest.raises(ValueError, match="dim=32 exceeds the embedding dimension d=16"):
        pca_svd_project(np.random.default_rng(0).random((20, 16)), 32)
    (tmp_path / "p.txt").write_text("\n".join(f"text number {i}" for i in range(30)) + "\n")
    result = cli(["sweep", str(tmp_path / "p.txt"), "--embed-provider", "openai-compatible", "--embed-model", "stub-embedding",
                  "--k-min", "2", "--k-max", "3", "--pca-dim", "64", "--out", str(tmp_path / "out"), "--json"], env)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["pca"]["dim"] == 16
    assert "pca_dim=64 is more than the 16 embedding dimensions: projecting to 16" in report["notes"]
    assert "note: pca_dim=64 is more than the 16 embedding dimensions: projecting to 16" in result.stderr


def check_malformed_answer_is_retried(cli, env, stub, tmp_path, engine, kind):
    """Two bad answers of `kind`, then good ones: everything ends embedded, both attempts recorded, no NaN stored."""
    stub.faults.fail_next(2, kind, endpoint="embeddings")
    (tmp_path / "t.txt").write_text("one\ntwo\nthree\n")
    result = embed(cli, env, tmp_path / "t.txt")
    assert json.loads(result.stdout)["embedded"] == 3
    assert count(engine, "SELECT count(*) FROM raw_calls WHERE status = 'failed' AND error_json->>'type' = 'malformed_response'") == 2
    with engine.connect() as conn:
        vectors = conn.execute(text("SELECT vector::text FROM embedding_vectors")).scalars().all()
    assert len(vectors) == 3 and not any("NaN" in v for v in vectors)


def test_nan_vectors(cli, env, stub, tmp_path, engine):
    check_malformed_answer_is_retried(cli, env, stub, tmp_path, engine, "nan")


def test_persistent_nan_vectors_fail_only_those_texts(cli, env, stub, tmp_path, engine):
    """NaN in every attempt of one batch: its text fails after max_attempts, the others are embedded, no NaN stored."""
    attempts = 3
    texts = ["alpha text", "beta text", "gamma text", "delta text", "epsilon text"]
    stub.faults.fail_next(attempts, "nan", endpoint="embeddings")  # the first batch's every attempt
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n")
    # One text per batch, one batch at a time: the queued faults all land on the first batch's attempts.
    result = embed(cli, env, tmp_path / "t.txt", "--batch-size", "1", "--concurrency", "1",
                   "--max-attempts", str(attempts), "--out", str(tmp_path / "v.npy"))
    assert result.returncode == 0, result.stderr
    assert stub.faults.snapshot()["queued"] == [] and stub.stats.snapshot()["faults_injected"] == {"nan": attempts}

    counts = stub.stats.snapshot()["embedding_text_counts"]
    [bad] = [t for t, c in counts.items() if c["ok"] == 0]
    assert counts[bad] == {"ok": 0, "total": attempts}  # retried up to max_attempts, never answered well
    good = [t for t in texts if t != bad]
    assert all(counts[t] == {"ok": 1, "total": 1} for t in good)

    summary = json.loads(result.stdout)
    assert summary["failed"] == 1 and summary["embedded"] == 4
    row = texts.index(bad)
    assert (f"row {row}: MalformedResponseError: openai-compatible returned non-finite values (NaN/inf) "
            "in 1 embedding(s)") in result.stderr, result.stderr
    assert not any(f"row {texts.index(t)}: " in result.stderr for t in good), result.stderr

    vectors = np.load(tmp_path / "v.npy")
    assert np.isnan(vectors[row]).all()  # the failed row is marked, not filled with a half-NaN vector
    for t in good:
        np.testing.assert_allclose(vectors[texts.index(t)], stub.embedding(t), rtol=1e-6)

    with engine.connect() as conn:
        stored = dict(conn.execute(text("SELECT text, vector::text FROM embedding_vectors")).all())
    assert sorted(stored) == sorted(good) and not any("NaN" in v for v in stored.values())
    assert count(engine, "SELECT count(*) FROM raw_calls WHERE status = 'failed' "
                         "AND error_json->>'type' = 'malformed_response'") == attempts
    assert count(engine, "SELECT count(*) FROM raw_calls WHERE status = 'success'") == 4


def test_fewer_vectors(cli, env, stub, tmp_path, engine):
    check_malformed_answer_is_retried(cli, env, stub, tmp_path, engine, "fewer_vectors")


def test_malformed_json(cli, env, stub, tmp_path, engine):
    check_malformed_answer_is_retried(cli, env, stub, tmp_path, engine, "malformed_json")


def test_wrong_dimension_for_cached_model(cli, env, stub, tmp_path, engine):
    """The model behind the name changed on the same server (16 -> 24 dimensions): fatal, nothing stored."""
    (tmp_path / "a.txt").write_text("cached one\ncached two\n")
    assert embed(cli, env, tmp_path / "a.txt").returncode == 0
    stub.dim = 24
    (tmp_path / "b.txt").write_text("new one\nnew two\n")
    result = embed(cli, env, tmp_path / "b.txt")
    assert result.returncode != 0 and "returned 24-dimensional vectors, but 16" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert count(engine, "SELECT count(*) FROM embedding_vectors") == 2


def test_another_server_with_the_same_model_name(cli, env, stub, tmp_path, engine):
    """Another openai-compatible server serving a model of the same name is another embedding space: none of
    the first server's vectors is reused for it, and every raw call records the server that answered."""
    from studyllm_core.testing import OpenAIStubServer

    (tmp_path / "a.txt").write_text("cached one\ncached two\n")
    assert embed(cli, env, tmp_path / "a.txt").returncode == 0
    with OpenAIStubServer(dim=16, api_keys=[TEST_API_KEY]) as other:
        result = embed(cli, env, tmp_path / "a.txt", "--base-url", other.base_url)
        assert result.returncode == 0 and json.loads(result.stdout)["cached"] == 0, result.stderr
        assert other.stats.text_count("cached one")["total"] == 1
    assert count(engine, "SELECT count(DISTINCT server) FROM embedding_vectors") == 2
    assert count(engine, "SELECT count(*) FROM raw_calls WHERE request_json->>'base_url' IS NULL") == 0


def test_database_disappears_mid_run(stub, tmp_path):
    pgdata = tmp_path / "db" / "pg"
    target = start_embedded(pgdata)
    engine = make_engine(target.owner_url)
    upgrade(engine)
    stub.faults.set(latency_s=0.05)
    texts = [f"vanishing database text {i}" for i in range(20_000)]
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n")
    env = {"PATH": "/usr/bin:/bin", "STUDYLLM_HOME": str(tmp_path / "home"), "STUDYLLM_DATABASE_URL": target.owner_url,
           "OPENAI_COMPATIBLE_API_KEY": TEST_API_KEY}
    args = [STUDYLLM_EXE, "embed", str(tmp_path / "t.txt"), "--provider", "openai-compatible", "--base-url", stub.base_url,
            "--model", "stub-embedding", "--batch-size", "128", "--concurrency", "4", "--json"]
    try:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while count(engine, "SELECT count(*) FROM embedding_vectors") < 1_000:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        engine.dispose()
        stop_embedded(pgdata)  # the server goes away under the running command
        out, err = proc.communicate(timeout=120)
        assert proc.returncode != 0
        assert err.strip().startswith("error: ") and "database unavailable" in err, err[-2000:]
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1

        start_embedded(pgdata)  # back again: what was stored is still there
        stored = count(engine, "SELECT count(*) FROM embedding_vectors")
        assert stored >= 1_000
        with engine.connect() as conn:
            before = set(conn.execute(text("SELECT text FROM embedding_vectors")).scalars())
        rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(rerun.stdout)["cached"] >= stored
        counts = stub.stats.snapshot()["embedding_text_counts"]
        assert all(counts[t]["ok"] == 1 for t in before)
        assert count(engine, "SELECT count(*) FROM embedding_vectors") == 20_000
    finally:
        engine.dispose()
        stop_embedded(pgdata)


@pytest.mark.parametrize("command", ["embed", "prompts"])
def test_out_inside_an_existing_file(cli, env, stub, tmp_path, command):
    """--out under a path that is a file fails before any API call (was: after the calls were paid for)."""
    (tmp_path / "t.txt").write_text("one\ntwo\n")
    (tmp_path / "file.txt").write_text("I am a file")
    out = str(tmp_path / "file.txt" / "v.out")
    if command == "embed":
        result = embed(cli, env, tmp_path / "t.txt", "--out", out)
    else:
        result = cli(["prompts", "run", str(tmp_path / "t.txt"), "--provider", "openai-compatible", "--model", "stub-chat",
                      "--out", out], env)
    assert_fatal(result, "file.txt is a file, not a folder", stub)


def mount_tmpfs(folder, size: str) -> bool:
    folder.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


def test_out_on_a_full_disk(cli, env, stub, tmp_path, engine):
    """--out on a full disk: one line that says the disk is full, no half-written .npy, and the vectors are
    cached all the same (a re-run elsewhere costs no request)."""
    full = tmp_path / "full"
    if not mount_tmpfs(full, "64k"):
        pytest.skip("needs a small tmpfs (root): the full-disk path is also covered by tests/core/test_files.py")
    try:
        (full / "filler").write_bytes(b"x" * 60_000)
        (tmp_path / "t.txt").write_text("\n".join(f"full disk text {i}" for i in range(300)) + "\n")
        result = embed(cli, env, tmp_path / "t.txt", "--out", str(full / "v.npy"))
        assert result.returncode != 0 and result.stderr.startswith("error: "), result.stderr
        assert "the disk is full" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert sorted(p.name for p in full.iterdir()) == ["filler"]  # no v.npy, no temporary file
        assert count(engine, "SELECT count(*) FROM embedding_vectors") == 300
        requests = stub.stats.requests_total
        again = embed(cli, env, tmp_path / "t.txt", "--out", str(tmp_path / "v.npy"))
        assert again.returncode == 0 and json.loads(again.stdout)["cached"] == 300
        assert stub.stats.requests_total == requests and np.load(tmp_path / "v.npy").shape == (300, 16)
    finally:
        subprocess.run(["umount", str(full)], capture_output=True)


@pytest.mark.slow
def test_postgres_killed_mid_run(stub, tmp_path):
    """kill -9 of the embedded Postgres under a running `embed` that owns it: one error line, no traceback
    (the server's own cleanup noise goes to the log file), and the re-run finishes from what was stored."""
    import os
    import signal

    home = Path(tempfile.mkdtemp(prefix="sl-killed-")) / "home"  # outside pytest's folder (see test_least_privilege)
    stub.faults.set(latency_s=0.05)
    (tmp_path / "t.txt").write_text("\n".join(f"killed postgres text {i}" for i in range(20_000)) + "\n")
    env = {"PATH": "/usr/bin:/bin", "STUDYLLM_HOME": str(home), "OPENAI_COMPATIBLE_API_KEY": TEST_API_KEY}
    args = [STUDYLLM_EXE, "embed", str(tmp_path / "t.txt"), "--provider", "openai-compatible", "--base-url", stub.base_url,
            "--model", "stub-embedding", "--batch-size", "128", "--concurrency", "4", "--json"]
    try:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while stub.stats.snapshot()["embedding_texts_ok"] < 2_000:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        os.kill(int((home / "pg" / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 3, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "database unavailable" in lines[0], err[-3000:]
        assert "Traceback" not in err
        rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        summary = json.loads(rerun.stdout)
        assert summary["cached"] >= 1_000 and summary["cached"] + summary["embedded"] == 20_000
    finally:
        stop_embedded(home / "pg")
        shutil.rmtree(home.parent, ignore_errors=True)


@pytest.mark.parametrize("extra, message", [
    (["--rpm", "-5"], "argument --rpm: must be a number above 0, got '-5'"),
    (["--rpm", "nan"], "argument --rpm: must be a number above 0, got 'nan'"),
    (["--tpm", "-1"], "argument --tpm: must be a number above 0, got '-1'"),
    (["--timeout", "nan"], "argument --timeout: must be a number above 0, got 'nan'"),
    (["--timeout", "0"], "argument --timeout: must be a number above 0, got '0'"),
    (["--max-attempts", "0"], "argument --max-attempts: must be at least 1, got 0"),
])
def test_bad_numbers_on_the_command_line(cli, env, stub, tmp_path, extra, message):
    (tmp_path / "t.txt").write_text("one\n")
    assert_fatal(embed(cli, env, tmp_path / "t.txt", *extra), message, stub)


def test_bad_log_level(cli, env, stub, tmp_path):
    (tmp_path / "t.txt").write_text("one\n")
    result = embed(cli, {**env, "STUDYLLM_LOG_LEVEL": "garbage"}, tmp_path / "t.txt")
    assert_fatal(result, "STUDYLLM_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'garbage'", stub)
