"""The local Dagster instance: a durable DAGSTER_HOME under STUDYLLM_HOME, storage on the studyllm server."""

import os
from importlib import resources
from pathlib import Path

from studyllm_core.config import ENV_DAGSTER_DATABASE_URL, ENV_DATABASE_URL, ENV_HOME, Settings, get_settings
from studyllm_core.db.engine import ensure_current_schema
from studyllm_core.db.server import DatabaseTarget, resolve_database
from studyllm_core.files import make_private_dirs

WORKSPACE_YAML = """load_from:
  - python_module:
      module_name: studyllm_pipeline.definitions
      location_name: studyllm
"""


def prepare_dagster_home(settings: Settings | None = None) -> tuple[Path, DatabaseTarget, dict[str, str]]:
    """Start (or attach to) the database, write dagster.yaml and workspace.yaml, and return the
    home, the database and the environment that Dagster processes need."""
    settings = settings or get_settings()
    target = resolve_database(settings)
    # Dagster's processes get the application role's URL, which cannot migrate: the schema is brought up
    # to date here, by its owner.
    ensure_current_schema(target)
    home = settings.dagster_home
    make_private_dirs(home)
    make_private_dirs(settings.home / "datasets")  # the folder the dataset sensor watches
    template = (resources.files("studyllm_pipeline") / "dagster.yaml").read_text()
    _write_if_changed(home / "dagster.yaml", template)
    _write_if_changed(home / "workspace.yaml", WORKSPACE_YAML)
    env = {
        ENV_HOME: str(settings.home),
        ENV_DATABASE_URL: target.url,
        ENV_DAGSTER_DATABASE_URL: target.dagster_url,
        "DAGSTER_HOME": str(home),
    }
    return home, target, env


def apply_environment(env: dict[str, str]) -> None:
    """Make this process (and every child) use the prepared instance and database."""
    os.environ.update(env)


def _write_if_changed(path: Path, content: str) -> None:
    if not path.exists() or path.read_text() != content:
        path.write_text(content)
