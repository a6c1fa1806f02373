"""`studyllm db ...` end to end through the real console script."""

import json

from sqlalchemy.engine import make_url

from studyllm_core.cli import build_parser
from studyllm_core.db.migrate import head_revision


def test_db_upgrade_and_status_json(cli, db_env):
    up = cli(["db", "upgrade"], db_env)
    assert up.returncode == 0, up.stderr
    assert f"at revision {head_revision()}" in up.stdout
    status = cli(["db", "status", "--json"], db_env)
    assert status.returncode == 0, status.stderr
    payload = json.loads(status.stdout)
    assert payload["up_to_date"] is True
    assert payload["tables"]["raw_calls"] == 0


def test_db_upgrade_prints_url_with_password_masked(cli, db_env, admin_url):
    # The embedded server trusts local connections, so a password in the URL is accepted and ignored.
    url = make_url(db_env["STUDYLLM_DATABASE_URL"]).set(password="hunter2").render_as_string(hide_password=False)
    assert "hunter2" in url and make_url(url).password == "hunter2"
    up = cli(["db", "upgrade", "--json"], {**db_env, "STUDYLLM_DATABASE_URL": url})
    assert up.returncode == 0, up.stderr
    assert "hunter2" not in up.stdout and "hunter2" not in up.stderr and "***" in json.loads(up.stdout)["url"]


def test_a_database_from_a_newer_studyllm_is_one_line_not_a_traceback(cli, db_env, engine):
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_from_the_future'"))
    for args in (["groups"], ["db", "upgrade"]):
        result = cli(args, db_env)
        assert result.returncode == 3, result.stderr
        assert result.stderr.startswith("error: cannot migrate the database at revision '0099_from_the_future'")
        assert "upgrade studyllm" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_bad_database_url_is_one_line_and_non_zero(cli, db_env):
    for url in ("::nonsense::", "postgresql://u:topsecret@127.0.0.1:1/x"):
        result = cli(["db", "status"], {**db_env, "STUDYLLM_DATABASE_URL": url})
        assert result.returncode != 0
        assert result.stderr.startswith("error: ")
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr and "topsecret" not in result.stderr


def test_unwritable_home_is_one_line(cli, db_env, tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("")
    env = {k: v for k, v in db_env.items() if k != "STUDYLLM_DATABASE_URL"}
    result = cli(["db", "status"], {**env, "STUDYLLM_HOME": str(blocker / "home")})
    assert result.returncode != 0
    assert result.stderr.strip().startswith("error: data directory") and "Traceback" not in result.stderr


def _all_command_paths(parser, prefix=()):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _all_command_paths(sub, (*prefix, name))


def test_every_command_has_help(cli):
    paths = list(_all_command_paths(build_parser()))
    assert ("db", "status") in paths
    for path in paths:
        result = cli([*path, "--help"])
        assert result.returncode == 0, (path, result.stderr)
        assert "usage: studyllm" in result.stdout
