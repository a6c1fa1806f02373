"""Legacy import: a generated v1 database (SQLite, as the seed era used) comes in with full parity, once."""

import hashlib
import json
import sqlite3
from datetime import datetime, timedelta, timezone

import numpy as np
import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from studyllm_core.db.calls import CallFilter, RawCallRepository
from studyllm_core.db.groups import GroupRepository
from studyllm_core.db.legacy import LegacySource
from studyllm_core.errors import InputError
from studyllm_core.services.study.export import ExportService
from studyllm_core.services.study.legacy_import import LegacyImporter, legacy_key

V1_DDL = """
CREATE TABLE inference_runs (
    id INTEGER PRIMARY KEY, prompt TEXT NOT NULL, response TEXT, provider VARCHAR(50) NOT NULL,
    tokens INTEGER, latency_ms FLOAT, metadata JSON, batch_id VARCHAR(36), created_at DATETIME
)
"""
T0 = datetime(2024, 2, 1, 9, 30)


def v1_rows(n: int, start: int = 1, seed: int = 11) -> list[tuple]:
    """Rows like the seed's InferenceRun: batches of varied size, some unbatched, some failed or partial."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(start, start + n):
        batch = None if i % 13 == 0 else f"batch-{(i // 150) % 60:03d}"
        failed = i % 41 == 0
        meta = {"model": ["gpt-4o", "llama-3-70b"][i % 2], "temperature": 0.7, "tags": ["a", "\u00fc"]}
        if failed:
            meta["error"] = "RateLimitError: 429"
        rows.append((
            i, f"Question {i}: what about \u00e9t\u00e9 {rng.integers(1000)}?",
            None if failed else ("" if i % 97 == 0 else f"Answer {i}"),
            ["azure", "openai", "hyperbolic"][i % 3], None if i % 17 == 0 else int(rng.integers(10, 900)),
            None if i % 23 == 0 else float(np.round(rng.gamma(2.0, 200.0), 3)),
            json.dumps(meta) if i % 29 else None, batch,
            (T0 + timedelta(seconds=int(i) * 7, microseconds=int(rng.integers(1_000_000)))).isoformat(sep=" "),
        ))
    return rows


def make_v1(path, rows) -> str:
    with sqlite3.connect(path) as conn:
        conn.execute(V1_DDL)
        conn.executemany("INSERT INTO inference_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    return f"sqlite:///{path}"


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_10k_rows_import_with_full_parity_and_a_rerun_imports_nothing(engine, tmp_path):
    path = tmp_path / "v1.db"
    rows = v1_rows(10_000)
    url = make_v1(path, rows)
    before = digest(path)

    report = LegacyImporter(engine).run(url)
    summary = report.to_dict()
    assert report.parity, json.dumps(summary, default=str)
    assert summary["imported"] == 10_000 and summary["already_present"] == 0
    assert summary["rows"] == {"v1": 10_000, "v2": 10_000, "match": True}
    assert summary["batches"]["v1"] == summary["batches"]["v2"] == 60 and summary["batches"]["mismatched"] == []
    assert summary["batches"]["rows_without_batch"] == sum(1 for r in rows if r[7] is None)
    assert summary["sample"]["rows"] == 1_000 and not any(summary["sample"]["mismatches"].values())
    want_failed = sum(1 for r in rows if r[2] is None or not r[2].strip())
    assert summary["statuses"] == {"success": 10_000 - want_failed, "failed": want_failed}
    assert summary["time_range"]["v1"][0] == datetime.fromisoformat(rows[0][8]).replace(tzinfo=timezone.utc).isoformat()
    assert digest(path) == before  # the v1 database is never written

    # Field by field for every row, not only the sample.
    repo = RawCallRepository(engine)
    stored = {c.request_hash: c for c in repo.list(limit=20_000)}
    fp = summary["source"]["fingerprint"]
    for r in rows:
        c = stored[legacy_key(fp, r[0])]
        assert c.request_json == {"prompt": r[1]} and c.provider == r[3] and c.modality == "text"
        assert c.response_json == (None if r[2] is None else {"text": r[2]})
        assert c.tokens_json == (None if r[4] is None else {"total_tokens": r[4]}) and c.latency_ms == r[5]
        assert c.created_at == datetime.fromisoformat(r[8]).replace(tzinfo=timezone.utc)
        meta = None if r[6] is None else json.loads(r[6])
        assert c.metadata_json["legacy"]["metadata"] == meta and c.metadata_json["legacy"]["batch_id"] == r[7]
        assert c.model == (meta or {}).get("model", "unknown")
        assert c.status == ("failed" if r[2] is None or not r[2].strip() else "success")
        if c.status == "failed":
            assert c.error_json["type"] == ("legacy_error" if meta and "error" in meta else "empty_response")

    again = LegacyImporter(engine).run(url).to_dict()
    assert again["imported"] == 0 and again["already_present"] == 10_000 and again["parity"]
    assert repo.count() == 10_000 and digest(path) == before

    # Batches are groups under the import's dataset group, so export and provenance see them.
    groups = GroupRepository(engine)
    batch = groups.lookup("batch", f"legacy:{fp}:batch:batch-000")
    assert len(groups.member_ids(batch.id)) == sum(1 for r in rows if r[7] == "batch-000")
    assert ExportService(engine).export(f"legacy:{fp}", tmp_path / "out", "parquet").calls.rows == 10_000


def test_rows_added_to_v1_later_are_imported_on_the_next_run(engine, tmp_path):
    path = tmp_path / "v1.db"
    url = make_v1(path, v1_rows(300))
    assert LegacyImporter(engine, chunk_size=64).run(url).imported == 300
    with sqlite3.connect(path) as conn:
        conn.executemany("INSERT INTO inference_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", v1_rows(50, start=301, seed=3))
    report = LegacyImporter(engine, chunk_size=64).run(url)
    assert (report.imported, report.already_present, report.parity) == (50, 300, True)
    # A copy of the file elsewhere is the same source: nothing is imported twice.
    copy = tmp_path / "copy.db"
    copy.write_bytes(path.read_bytes())
    assert LegacyImporter(engine).run(f"sqlite:///{copy}").imported == 0


def test_postgres_v1_database_is_read_in_a_read_only_transaction(engine, empty_database_url):
    libpq = make_url(empty_database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    rows = v1_rows(200)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE inference_runs (id serial PRIMARY KEY, prompt text, response text, provider varchar(50), "
            "tokens integer, latency_ms double precision, metadata jsonb, batch_id varchar(36), created_at timestamp)"
        )
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO inference_runs VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)", rows)
        conn.execute("CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE 'written'; END $$")
        conn.execute("CREATE TRIGGER no_writes BEFORE INSERT OR UPDATE OR DELETE ON inference_runs EXECUTE FUNCTION refuse_writes()")
    report = LegacyImporter(engine).run(libpq)
    assert report.parity and report.imported == 200 and report.source["kind"] == "postgresql"
    with LegacySource(libpq) as source:
        assert source.conn.execute(text("SHOW transaction_read_only")).scalar_one() == "on"
        with pytest.raises(Exception, match="read-only transaction"):
            source.conn.execute(text("CREATE TABLE sneaky (id int)"))


@pytest.mark.parametrize("setup, message", [
    ("other_schema", "lacks columns batch_id, created_at"),
    ("no_table", r"has no table inference_runs \(tables: runs\)"),
    ("empty", "is empty; there is nothing to import"),
    ("not_sqlite", "cannot be read as a database"),
    ("missing_file", "no SQLite file at"),
])
def test_bad_v1_databases_are_refused_before_anything_is_written(engine, tmp_path, setup, message):
    path = tmp_path / "v1.db"
    if setup == "other_schema":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE inference_runs (id INTEGER PRIMARY KEY, prompt TEXT, response TEXT, provider TEXT, "
                         "tokens INTEGER, latency_ms FLOAT, metadata TEXT)")
            conn.execute("INSERT INTO inference_runs VALUES (1, 'p', 'r', 'openai', 1, 1.0, '{}')")
    elif setup == "no_table":
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE runs (id INTEGER)")
    elif setup == "empty":
        make_v1(path, [])
    elif setup == "not_sqlite":
        path.write_bytes(b"this is not a database file at all" * 100)
    with pytest.raises(InputError, match=message):
        LegacyImporter(engine).run(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT (SELECT count(*) FROM raw_calls) + (SELECT count(*) FROM groups)")).scalar_one() == 0


def test_unsupported_urls_name_the_accepted_forms(engine):
    with pytest.raises(InputError, match=r"use sqlite:///PATH or postgresql://"):
        LegacyImporter(engine).run("mysql://u@h/db")
    with pytest.raises(InputError, match="is not a database URL"):
        LegacyImporter(engine).run("not a url")


def test_only_this_source_is_counted(engine, tmp_path):
    """Two different v1 databases import side by side; each report counts its own rows."""
    a = LegacyImporter(engine).run(make_v1(tmp_path / "a.db", v1_rows(120, seed=1)))
    b = LegacyImporter(engine).run(make_v1(tmp_path / "b.db", v1_rows(80, seed=2)))
    assert a.source["fingerprint"] != b.source["fingerprint"]
    assert (a.rows["v2"], b.rows["v2"], a.parity, b.parity) == (120, 80, True, True)
    assert RawCallRepository(engine).count(CallFilter(provider="azure")) == sum(
        1 for r in v1_rows(120, seed=1) + v1_rows(80, seed=2) if r[3] == "azure")


def test_the_cli_default_sample_is_the_importers():
    """`import-legacy --help` states the default without importing the importer (SQLAlchemy); the two must agree."""
    from studyllm_core.cli.legacy import DEFAULT_SAMPLE
    from studyllm_core.services.study.legacy_import import SAMPLE

    assert DEFAULT_SAMPLE == SAMPLE
