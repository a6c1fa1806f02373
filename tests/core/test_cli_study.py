"""The study commands end to end: real console script, real database, loopback embedding server."""

import json
import sqlite3
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import text

from studyllm_core.db.calls import NewCall, RawCallRepository
from studyllm_core.db.groups import GroupRepository
from studyllm_core.services.provenance import ProvenanceService
from support import TEST_API_KEY

T0 = datetime(2026, 4, 1, tzinfo=timezone.utc)


def one_line_error(result, message: str) -> None:
    assert result.returncode != 0, result.stdout
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def nothing_written(engine) -> bool:
    with engine.connect() as conn:
        return conn.execute(text("SELECT (SELECT count(*) FROM raw_calls) + (SELECT count(*) FROM groups)")).scalar_one() == 0


@pytest.fixture
def recorded(engine):
    """Calls of a priced and an unpriced model, in a run with one step."""
    calls = [
        NewCall(provider="openai", model="gpt-4o-mini", modality="chat", status="success" if i % 4 else "failed",
                request_json={"prompt": f"question {i}"}, response_json={"text": "a"} if i % 4 else None,
                error_json=None if i % 4 else {"type": "rate_limit", "message": "429"}, latency_ms=100.0 + i,
                tokens_json={"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500} if i % 4 else None,
                created_at=T0 + timedelta(hours=i))
        for i in range(40)
    ] + [NewCall(provider="hyperbolic", model="mystery", status="success", request_json={"prompt": "x"},
                 tokens_json={"total_tokens": 10}, latency_ms=5.0, created_at=T0) for _ in range(5)]
    ids = RawCallRepository(engine).insert_many(calls)
    prov = ProvenanceService(engine)
    run = prov.record_step("run", "sweep")
    step = prov.record_step("batch", "first-batch", run_id=run, position=0)
    GroupRepository(engine).add_members(step, ids[:40])
    return ids


def test_stats_json_and_text(cli, db_env, recorded):
    result = cli(["stats", "--json"], db_env)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    rows = {r["provider"]: r for r in payload["providers"]}
    assert rows["openai"]["calls"] == 40 and rows["openai"]["succeeded"] == 30
    assert rows["openai"]["cost_usd"] == pytest.approx(30 * (1000 * 0.15 + 500 * 0.60) / 1e6)
    assert rows["hyperbolic"]["cost_usd"] is None  # unknown, not 0
    assert payload["summary"]["unpriced_models"] == ["hyperbolic/mystery"] and payload["summary"]["cost_usd"] is None

    since = cli(["stats", "--since", "2026-04-02", "--group", "first-batch", "--json"], db_env)
    assert since.returncode == 0, since.stderr
    assert json.loads(since.stdout)["summary"]["calls"] == 40 - 24

    human = cli(["stats"], db_env)
    assert human.returncode == 0, human.stderr
    assert "gpt-4o-mini" in human.stdout and "unknown" in human.stdout
    assert "cost unknown for hyperbolic/mystery" in human.stdout


def test_calls_lists_the_newest_or_the_prompts_that_match(cli, db_env, recorded):
    newest = cli(["calls", "--limit", "3", "--provider", "openai", "--json"], db_env)
    assert newest.returncode == 0, newest.stderr
    rows = json.loads(newest.stdout)["calls"]
    assert [r["prompt"] for r in rows] == ["question 39", "question 38", "question 37"]
    found = cli(["calls", "--search", "question 7"], db_env)  # both words: only the prompt "question 7"
    assert found.returncode == 0, found.stderr
    assert "question 7" in found.stdout and "question 8" not in found.stdout and found.stdout.startswith("id  ")
    one_line_error(cli(["calls", "--search", "  "], db_env), "the search query is empty")
    assert cli(["calls", "--limit", "0"], db_env).returncode == 2


def test_stats_on_an_empty_database_or_unknown_group(cli, db_env, engine):
    empty = cli(["stats"], db_env)
    assert empty.returncode == 0 and "calls 0" in empty.stdout, empty.stderr
    assert empty.stderr.strip() == "note: no calls are recorded yet; record some with `studyllm prompts run` or `studyllm embed`"
    one_line_error(cli(["stats", "--group", "nope"], db_env), "no group with id or name 'nope'; list groups with `studyllm groups`")
    usage = cli(["stats", "--since", "yesterday"], db_env)
    assert usage.returncode == 2 and "is not a date; use YYYY-MM-DD" in usage.stderr


def test_groups_provenance_and_export(cli, db_env, recorded, tmp_path):
    groups = cli(["groups", "--json"], db_env)
    assert groups.returncode == 0, groups.stderr
    listed = {g["name"]: g for g in json.loads(groups.stdout)["groups"]}
    assert listed["first-batch"]["members"] == 40 and listed["sweep"]["members"] == 0
    assert [g["name"] for g in json.loads(cli(["groups", "--type", "run", "--json"], db_env).stdout)["groups"]] == ["sweep"]

    prov = cli(["provenance", "sweep", "--json"], db_env)
    assert prov.returncode == 0, prov.stderr
    assert [s["name"] for s in json.loads(prov.stdout)["steps"]] == ["first-batch"]
    assert "steps:" in cli(["provenance", "sweep"], db_env).stdout

    out = tmp_path / "export"
    exported = cli(["export", "sweep", "--format", "csv", "--out", str(out), "--json"], db_env)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["calls"]["rows"] == 40
    assert list(pd.read_csv(out / "calls.csv")["id"]) == recorded[:40]

    one_line_error(cli(["provenance", "nope"], db_env), "no group with id or name 'nope'")
    one_line_error(cli(["export", "nope", "--out", str(tmp_path / "x")], db_env), "no group with id or name 'nope'")
    assert not (tmp_path / "x").exists()
    one_line_error(cli(["export", "sweep", "--out", str(out)], db_env), "is not empty")


def test_similar_by_text_and_by_item(cli, db_env, stub, engine):
    env = {**db_env, "OPENAI_COMPATIBLE_API_KEY": TEST_API_KEY, "OPENAI_COMPATIBLE_BASE_URL": stub.base_url}
    one_line_error(cli(["similar", "anything"], env), "no stored embeddings yet; embed texts first with `studyllm embed`")
    assert nothing_written(engine) and stub.stats.requests_total == 0

    texts = [f"note {i} on topic {i % 9}" for i in range(120)]
    corpus = db_env["STUDYLLM_HOME"] + "/corpus.txt"
    with open(corpus, "w") as handle:
        handle.write("\n".join(texts) + "\n")
    embedded = cli(["embed", corpus, "--provider", "openai-compatible", "--model", "stub-embedding"], env)
    assert embedded.returncode == 0, embedded.stderr

    result = cli(["similar", "a question about topics", "--k", "5", "--json"], env)
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    data = np.array([stub.embedding(t) for t in texts])
    q = np.array(stub.embedding("a question about topics"))
    want = [texts[i] for i in np.argsort(-(data @ q) / np.linalg.norm(data, axis=1))[:5]]
    assert [n["text"] for n in payload["neighbours"]] == want
    assert payload["query"]["model"] == "stub-embedding" and payload["query"]["dimension"] == 16

    first = payload["neighbours"][0]
    by_item = cli(["similar", "--of", first["request_hash"], "--k", "3", "--json"], env)
    assert by_item.returncode == 0, by_item.stderr
    assert first["request_hash"] not in [n["request_hash"] for n in json.loads(by_item.stdout)["neighbours"]]
    assert "rank" in cli(["similar", "--of", str(first["embedding_id"])], env).stdout
    one_line_error(cli(["similar", "x", "--model", "other"], env), "no stored embeddings for */other; stored are: openai-compatible/stub-embedding")
    one_line_error(cli(["similar"], env), "give either TEXT to search for or --of ITEM")


def test_import_legacy_reports_parity_and_refuses_other_schemas(cli, db_env, engine, tmp_path):
    bad = tmp_path / "other.db"
    with sqlite3.connect(bad) as conn:
        conn.execute("CREATE TABLE inference_runs (id INTEGER PRIMARY KEY, question TEXT)")
        conn.execute("INSERT INTO inference_runs VALUES (1, 'q')")
    one_line_error(cli(["import-legacy", f"sqlite:///{bad}"], db_env), "lacks columns prompt, response")
    assert nothing_written(engine)

    v1 = tmp_path / "v1.db"
    with sqlite3.connect(v1) as conn:
        conn.execute("CREATE TABLE inference_runs (id INTEGER PRIMARY KEY, prompt TEXT, response TEXT, provider TEXT, "
                     "tokens INTEGER, latency_ms FLOAT, metadata TEXT, batch_id TEXT, created_at DATETIME)")
        conn.executemany("INSERT INTO inference_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
            (i, f"p{i}", f"r{i}", "openai", i, 1.5 * i, json.dumps({"model": "gpt-4o-mini"}), f"b{i % 3}",
             f"2024-01-0{1 + i % 5} 10:00:00") for i in range(1, 301)])
    first = cli(["import-legacy", f"sqlite:///{v1}", "--json"], db_env)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["parity"] and report["imported"] == 300 and report["batches"]["v2"] == 3
    second = cli(["import-legacy", f"sqlite:///{v1}"], db_env)
    assert second.returncode == 0, second.stderr
    assert "imported  0 new rows, 300 already present" in second.stdout and "parity: full" in second.stdout
    assert RawCallRepository(engine).count() == 300
