"""`studyllm` starts light: building the parser (every `--help`, every argument error) imports no
database driver, SQLAlchemy or numpy, and a command on a current database never imports Alembic
or the ORM. Checked by what a fresh interpreter has in `sys.modules`, not by timing."""

import json
import os
import subprocess
import sys

HEAVY_FOR_THE_PARSER = ["alembic", "numpy", "pandas", "psycopg", "pyarrow", "scipy", "sqlalchemy", "torch"]


def loaded_after(code: str, env: dict[str, str] | None = None) -> set[str]:
    """Top-level and dotted module names loaded by `code` in a fresh interpreter."""
    script = f"import sys\n{code}\nimport json\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env=env or dict(os.environ))
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_building_the_parser_loads_no_database_or_numerics():
    modules = loaded_after("from studyllm_core.cli import build_parser\nbuild_parser()")
    assert "studyllm_core.cli.embed" in modules and "studyllm_pipeline.commands" in modules  # every command registered
    assert not {m.split(".")[0] for m in modules} & set(HEAVY_FOR_THE_PARSER)


def test_a_command_on_a_current_database_skips_alembic_and_the_orm(db_env, empty_database_url):
    run = "from studyllm_core.cli import main\nassert main(['groups', '--json']) == 0"
    current = loaded_after(run, db_env)
    assert "sqlalchemy" in current  # the command did reach the database
    assert "alembic" not in current and "sqlalchemy.orm" not in current

    # The same command on an empty database migrates it, and only then loads Alembic.
    migrated = loaded_after(run, {**db_env, "STUDYLLM_DATABASE_URL": empty_database_url})
    assert "alembic" in migrated


def test_loading_the_code_location_imports_neither_torch_nor_matplotlib():
    """What every run process and the code server import first: no model library (only steps that embed
    locally load it) and no plotting library (only steps that draw a chart load it)."""
    modules = loaded_after("import studyllm_pipeline.definitions")
    assert "dagster" in modules
    assert not {m.split(".")[0] for m in modules} & {"torch", "sentence_transformers", "matplotlib"}
