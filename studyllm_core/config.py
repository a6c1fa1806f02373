"""Core settings read from the environment (and a `.env` file), in one place.

`STUDYLLM_HOME` holds the embedded database, artifacts and logs; `STUDYLLM_DATABASE_URL`, when
set, points at an external Postgres instead of the embedded one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dotenv import load_dotenv

from studyllm_core.errors import ConfigError

ENV_HOME = "STUDYLLM_HOME"
ENV_DATABASE_URL = "STUDYLLM_DATABASE_URL"
ENV_DAGSTER_DATABASE_URL = "STUDYLLM_DAGSTER_DATABASE_URL"
ENV_LOG_LEVEL = "STUDYLLM_LOG_LEVEL"

_dotenv_loaded = False


def load_env_file() -> None:
    """Load `.env` from the working directory once; real environment variables win."""
    global _dotenv_loaded
    if not _dotenv_loaded:
        load_dotenv(Path.cwd() / ".env", override=False)
        _dotenv_loaded = True


@dataclass(frozen=True)
class Settings:
    """Resolved core settings."""

    home: Path
    database_url: str | None
    log_level: str

    @property
    def pgdata(self) -> Path:
        return self.home / "pg"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def dagster_home(self) -> Path:
        return self.home / "dagster"


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def get_settings() -> Settings:
    """Read the settings now (not cached, so tests and subprocesses see their own env); ConfigError names a bad one."""
    load_env_file()
    home = Path(os.environ.get(ENV_HOME) or "~/.studyllm").expanduser()
    url = os.environ.get(ENV_DATABASE_URL) or None
    level = (os.environ.get(ENV_LOG_LEVEL) or "WARNING").strip().upper()
    if level not in LOG_LEVELS:
        raise ConfigError(f"{ENV_LOG_LEVEL} must be one of {', '.join(LOG_LEVELS)}, got {os.environ[ENV_LOG_LEVEL]!r}")
    return Settings(home=home, database_url=url, log_level=level)
