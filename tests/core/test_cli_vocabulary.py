"""One vocabulary across commands: GROUP, empty results, exit codes, argparse errors, JSON names, timestamps."""

import json
import re
from datetime import datetime
from pathlib import Path

import pytest

from studyllm_core.cli import build_parser, main
from studyllm_core.db.calls import NewCall, RawCallRepository
from studyllm_core.db.groups import GroupRepository
from studyllm_core.services.provenance import ProvenanceService

USER_GUIDE = Path(__file__).resolve().parents[2] / "docs" / "user-guide.md"
ISO_8601 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")


@pytest.fixture
def run_with_a_step(engine):
    """A run group whose only calls are members of its step (as `studyllm sweep` and the pipeline record them)."""
    ids = RawCallRepository(engine).insert_many(
        [NewCall(provider="openai", model="gpt-4o-mini", status="success", request_json={"prompt": f"q{i}"},
                 latency_ms=10.0) for i in range(7)]
    )
    prov = ProvenanceService(engine)
    run = prov.record_step("run", "study-run")
    step = prov.record_step("batch", "study-run:batch", run_id=run, position=0)
    GroupRepository(engine).add_members(step, ids)
    return ids


def test_group_means_the_group_and_every_group_below_it_in_stats_and_export(cli, db_env, run_with_a_step, tmp_path):
    stats = cli(["stats", "--group", "study-run", "--json"], db_env)
    assert stats.returncode == 0, stats.stderr
    exported = cli(["export", "study-run", "--format", "jsonl", "--out", str(tmp_path / "x"), "--json"], db_env)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(stats.stdout)["summary"]["calls"] == json.loads(exported.stdout)["calls"]["rows"] == 7
    for command in ("stats", "export", "provenance"):
        shown = cli([command, "--help"], db_env).stdout
        assert "every group below it" in " ".join(shown.split()), command


def test_an_empty_result_is_an_empty_table_and_exit_0(cli, db_env, run_with_a_step, engine, tmp_path):
    nothing = cli(["stats", "--provider", "nosuch", "--json"], db_env)
    assert nothing.returncode == 0, nothing.stderr
    payload = json.loads(nothing.stdout)
    assert payload["summary"]["calls"] == 0 and payload["providers"] == []
    human = cli(["stats", "--provider", "nosuch"], db_env)
    assert human.returncode == 0 and "calls 0" in human.stdout and "(none)" in human.stdout, human.stderr
    GroupRepository(engine).ensure_group("batch", "empty")
    exported = cli(["export", "empty", "--format", "csv", "--out", str(tmp_path / "e"), "--json"], db_env)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["calls"]["rows"] == 0 and (tmp_path / "e" / "calls.csv").is_file()
    assert cli(["groups", "--type", "nosuch", "--json"], db_env).returncode == 0


def test_timestamps_are_iso_8601_and_a_group_id_has_one_json_name(cli, db_env, run_with_a_step):
    stats = json.loads(cli(["stats", "--json"], db_env).stdout)["summary"]
    groups = json.loads(cli(["groups", "--json"], db_env).stdout)["groups"]
    provenance = json.loads(cli(["provenance", "study-run", "--json"], db_env).stdout)
    stamps = [stats["first_call_at"], stats["last_call_at"], groups[0]["created_at"], provenance["group"]["created_at"]]
    for stamp in stamps:
        assert ISO_8601.match(stamp) and datetime.fromisoformat(stamp).tzinfo is not None, stamp
    human = cli(["stats"], db_env).stdout + cli(["groups"], db_env).stdout
    assert not re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}", human), human  # no space-separated times either
    assert "group_id" in provenance and provenance["group_id"] == provenance["group"]["id"]


def test_every_argparse_error_is_one_line_with_exit_2(capsys):
    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    seen = 0
    for name, sub in commands.items():
        nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
        argvs = [[name, *sub_name.split(), "--no-such-option"] for sub_name in (nested[0].choices if nested else [""])]
        for argv in argvs:
            argv = [a for a in argv if a]
            with pytest.raises(SystemExit) as stopped:
                main(argv)
            err = capsys.readouterr().err
            assert stopped.value.code == 2, argv
            assert err.count("\n") == 1 and err.startswith("error: ") and "usage:" not in err, (argv, err)
            seen += 1
    assert seen >= 15


def test_the_exit_code_table_is_the_codes_the_cli_uses():
    from studyllm_core.errors import DatabaseError, StudyllmError
    from studyllm_core.providers.errors import ConfigurationError, MissingKeyError, ProviderError, SystemicFaultError

    table = dict(re.findall(r"^\| (\d+) \| (.+) \|$", USER_GUIDE.read_text(), re.M))
    assert set(table) == {"0", "1", "2", "3", "4", "130"}
    assert StudyllmError.exit_code == ConfigurationError.exit_code == MissingKeyError.exit_code == 2
    assert DatabaseError.exit_code == 3 and ProviderError.exit_code == SystemicFaultError.exit_code == 4
    assert "missing API key" in table["2"] and "database" in table["3"] and "provider" in table["4"]
