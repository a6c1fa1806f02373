"""Least privilege: the application's Postgres role cannot switch off raw_calls' immutability; logs, outputs and
STUDYLLM_HOME are the user's only; docker-compose publishes the UI on the loopback interface only."""

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
import yaml
from sqlalchemy.engine import make_url

from studyllm_core.db.server import APP_ROLE, libpq_url, start_embedded, stop_embedded
from support import ROOT, STUDYLLM_EXE, TEST_API_KEY


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def home():
    """A fresh STUDYLLM_HOME outside pytest's folder: as root the embedded server runs as `pgserver`, which
    must pass through every folder above its data, and another root pytest session re-closes
    /tmp/pytest-of-root (mode 0700) whenever it starts."""
    home = Path(tempfile.mkdtemp(prefix="sl-priv-")) / "home"
    yield home
    stop_embedded(home / "pg")
    shutil.rmtree(home.parent, ignore_errors=True)


def run(args, home: Path, stub) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "STUDYLLM_DATABASE_URL"}
    env.update(STUDYLLM_HOME=str(home), OPENAI_COMPATIBLE_API_KEY=TEST_API_KEY, OPENAI_COMPATIBLE_BASE_URL=stub.base_url)
    return subprocess.run([STUDYLLM_EXE, *args], env=env, capture_output=True, text=True, timeout=180)


FORBIDDEN = [
    "ALTER TABLE raw_calls DISABLE TRIGGER raw_calls_immutable",
    "ALTER TABLE raw_calls DISABLE TRIGGER ALL",
    "DROP TRIGGER raw_calls_immutable ON raw_calls",
    "SET session_replication_role = replica",
    "UPDATE raw_calls SET model = 'changed'",
    "DELETE FROM raw_calls",
    "TRUNCATE raw_calls",
    "ALTER TABLE raw_calls ADD COLUMN sneaky integer",
    "CREATE TABLE sneaky (x integer)",
]


def test_the_application_role_cannot_touch_raw_calls(home, stub, tmp_path):
    texts = tmp_path / "t.txt"
    texts.write_text("one text\nanother text\n")
    result = run(["embed", str(texts), "--provider", "openai-compatible", "--model", "stub-embedding"], home, stub)
    assert result.returncode == 0, result.stderr
    status = json.loads(run(["db", "status", "--json"], home, stub).stdout)
    assert make_url(status["url"]).username == APP_ROLE  # what every command connects as

    target = start_embedded(home / "pg")
    for statement in FORBIDDEN:
        with psycopg.connect(libpq_url(make_url(target.url)), autocommit=True) as conn:
            assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
            assert conn.execute("SELECT count(*) FROM raw_calls").fetchone()[0] == 1  # it reads, and it inserted
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with psycopg.connect(libpq_url(make_url(target.owner_url)), autocommit=True) as conn:
        assert conn.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'raw_calls_immutable'").fetchone() == ("O",)
        assert conn.execute("SELECT count(*) FROM raw_calls WHERE model = 'stub-embedding'").fetchone()[0] == 1


def test_dagster_uses_the_application_role_and_an_older_home_is_handed_over(home, stub):
    """The dagster database belongs to the application role; in a home made before the role existed, its
    database and Dagster's tables in it pass to the role at the next start."""
    target = start_embedded(home / "pg")
    owner = make_url(target.owner_url)
    with psycopg.connect(libpq_url(owner.set(database="postgres")), autocommit=True) as conn:
        conn.execute('ALTER DATABASE dagster OWNER TO "postgres"')  # as it was before
    with psycopg.connect(libpq_url(owner.set(database="dagster")), autocommit=True) as conn:
        conn.execute("CREATE TABLE runs (id serial PRIMARY KEY, body text)")
        conn.execute("CREATE TABLE kvs (key text PRIMARY KEY)")
    stop_embedded(home / "pg")

    target = start_embedded(home / "pg")
    dagster = make_url(target.dagster_url)
    assert dagster.username == APP_ROLE
    with psycopg.connect(libpq_url(dagster), autocommit=True) as conn:
        conn.execute("INSERT INTO runs (body) VALUES ('x')")  # owns the table and its sequence now
        conn.execute("ALTER TABLE kvs ADD COLUMN value text")  # Dagster's own migrations work
        assert conn.execute("SELECT pg_catalog.pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'dagster'"
                            ).fetchone() == (APP_ROLE,)


def test_logs_outputs_and_home_are_private(home, stub, tmp_path):
    texts = tmp_path / "t.txt"
    texts.write_text("private text\n")
    out = tmp_path / "new" / "v.npy"
    jsonl = tmp_path / "replies.jsonl"
    assert run(["embed", str(texts), "--provider", "openai-compatible", "--model", "stub-embedding", "--out", str(out)],
               home, stub).returncode == 0
    assert run(["prompts", "run", str(texts), "--provider", "openai-compatible", "--model", "stub-chat", "--out",
                str(jsonl)], home, stub).returncode == 0
    assert mode(home) & 0o066 == 0  # 0700 (0711 as root: the embedded server's own user passes through it)
    assert mode(home / "logs") == 0o700 and mode(home / "logs" / "studyllm.log") == 0o600
    assert mode(out) == 0o600 and mode(out.parent) == 0o700 and mode(jsonl) == 0o600


def test_docker_compose_publishes_the_ui_on_the_loopback_interface_only():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    published = [port for service in compose["services"].values() for port in service.get("ports", [])]
    assert published and all(str(port).startswith("127.0.0.1:") for port in published), published
