"""Settings read from the environment (and a `.env` file), in one place, and passed in from here.

`STUDYLLM_HOME` holds the embedded database, artifacts and logs; `STUDYLLM_DATABASE_URL`, when
set, points at an external Postgres instead of the embedded one. The pipeline's settings (which
models its resources use, the watched folder, the nightly K range) are read here too. Provider keys
and URLs are each provider's own (`providers/settings.py`), read when a provider is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dotenv import load_dotenv

from studyllm_core.errors import ConfigError

if TYPE_CHECKING:
    from upath import UPath

ENV_HOME = "STUDYLLM_HOME"
ENV_DATABASE_URL = "STUDYLLM_DATABASE_URL"
ENV_DAGSTER_DATABASE_URL = "STUDYLLM_DAGSTER_DATABASE_URL"
ENV_LOG_LEVEL = "STUDYLLM_LOG_LEVEL"
ENV_DATABASE_OWNER_URL = "STUDYLLM_DATABASE_OWNER_URL"
ENV_PRICES = "STUDYLLM_PRICES"
ENV_WATCH_DIR = "STUDYLLM_WATCH_DIR"
ENV_SWEEP_K_MIN = "STUDYLLM_SWEEP_K_MIN"
ENV_SWEEP_K_MAX = "STUDYLLM_SWEEP_K_MAX"
ENV_SWEEP_KS_PER_RUN = "STUDYLLM_SWEEP_KS_PER_RUN"
ENV_SENSOR_INTERVAL = "STUDYLLM_SENSOR_INTERVAL_S"
ENV_DAGSTER_URL = "STUDYLLM_DAGSTER_URL"
ENV_EMBED_PROVIDER = "STUDYLLM_EMBED_PROVIDER"
ENV_EMBED_MODEL = "STUDYLLM_EMBED_MODEL"
ENV_EMBED_BASE_URL = "STUDYLLM_EMBED_BASE_URL"
ENV_SUMMARIZER = "STUDYLLM_SUMMARIZER"
ENV_ARTIFACTS_URL = "STUDYLLM_ARTIFACTS_URL"

# The pipeline's resources read these through `dg.EnvVar`; the code location sets the defaults of the
# ones left unset (`set_pipeline_defaults`), so the UI shows each resource's variable, never its value.
PIPELINE_DEFAULTS = {
    ENV_EMBED_PROVIDER: "local",
    ENV_EMBED_MODEL: "all-MiniLM-L6-v2",
    ENV_EMBED_BASE_URL: "",  # empty: the provider's own default
    ENV_SUMMARIZER: "extractive",
}
DEFAULT_SWEEP_K = (2, 12)

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
    dagster_database_url: str | None = None
    database_owner_url: str | None = None
    prices_path: str | None = None  # a price file merged over the packaged prices
    watch_dir: Path | None = None  # None: `datasets_dir`
    dagster_url: str | None = None  # the webserver `studyllm backfill` asks
    artifacts_url: str | None = None  # None: `$STUDYLLM_HOME/artifacts`; else a folder or an fsspec URL (s3://...)

    @property
    def datasets_dir(self) -> Path:
        """The folder the pipeline's sensor watches for new dataset files."""
        return self.watch_dir or self.home / "datasets"

    @property
    def pgdata(self) -> Path:
        return self.home / "pg"

    @property
    def artifacts_dir(self) -> Path | UPath:
        """Where the pipeline's artifacts live: `$STUDYLLM_HOME/artifacts`, or STUDYLLM_ARTIFACTS_URL
        (a local folder as a Path; object storage such as `s3://bucket/prefix` as a UPath)."""
        return storage_location(self.artifacts_url) if self.artifacts_url else self.home / "artifacts"

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
    watch = os.environ.get(ENV_WATCH_DIR)
    return Settings(
        home=home,
        database_url=url,
        log_level=level,
        dagster_database_url=os.environ.get(ENV_DAGSTER_DATABASE_URL) or None,
        database_owner_url=os.environ.get(ENV_DATABASE_OWNER_URL) or None,
        prices_path=os.environ.get(ENV_PRICES) or None,
        watch_dir=Path(watch).expanduser() if watch else None,
        dagster_url=os.environ.get(ENV_DAGSTER_URL) or None,
        artifacts_url=os.environ.get(ENV_ARTIFACTS_URL) or None,
    )


def storage_location(location: str) -> Path | UPath:
    """A folder named by a path or URL: a local path or `file://` URL as a Path (written atomically
    by rename), anything else (`s3://`, `gs://`, `memory://`: any fsspec protocol) as a UPath."""
    from upath import UPath  # fsspec is imported only when a URL names the artifacts

    where = UPath(location)
    if where.protocol in ("", "file", "local"):
        return Path(where.path).expanduser()
    return where


def sweep_k_range() -> tuple[int, int]:
    """The nightly schedule's K range: STUDYLLM_SWEEP_K_MIN..STUDYLLM_SWEEP_K_MAX (default 2..12)."""
    load_env_file()
    bounds = []
    for name, default in zip((ENV_SWEEP_K_MIN, ENV_SWEEP_K_MAX), DEFAULT_SWEEP_K, strict=True):
        raw = os.environ.get(name)
        try:
            bounds.append(int(raw) if raw else default)
        except ValueError:
            raise ConfigError(f"{name} must be a whole number, got {raw!r}; fix or unset it") from None
    return bounds[0], bounds[1]


def sweep_ks_per_run() -> int | None:
    """How many K one pipeline run sweeps (STUDYLLM_SWEEP_KS_PER_RUN): None (unset) is a whole K range per
    run, on one machine; 1 is one run per (dataset, K), the unit a run launcher spreads over machines."""
    return _whole_number_setting(ENV_SWEEP_KS_PER_RUN, None)


DEFAULT_SENSOR_INTERVAL_S = 30  # Dagster's own default for sensors


def sensor_interval_s() -> int:
    """How often the pipeline's sensors and report automation look for new work, in seconds
    (STUDYLLM_SENSOR_INTERVAL_S, default 30): lower reacts sooner to new files, replies and K results,
    at the cost of more queries per minute on the Dagster and studyllm databases."""
    return _whole_number_setting(ENV_SENSOR_INTERVAL, DEFAULT_SENSOR_INTERVAL_S)


def _whole_number_setting(name: str, default: int | None) -> int | None:
    """The environment variable `name` (then `.env`) as a whole number of at least 1, `default` when unset;
    ConfigError naming the variable for anything else."""
    load_env_file()
    raw = (os.environ.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1, got {raw!r}; fix or unset it")
    return int(raw)


def variable(name: str) -> str | None:
    """The value of the environment variable `name` (the environment, then `.env`), None when unset or
    empty: for a setting that names the variable to read (the pipeline embedder's `api_key_env`)."""
    load_env_file()
    return os.environ.get(name) or None


def set_pipeline_defaults() -> None:
    """For the Dagster code location (an entry point): the defaults of the pipeline's settings left
    unset, so its resources' `dg.EnvVar`s always resolve."""
    load_env_file()
    for name, value in PIPELINE_DEFAULTS.items():
        os.environ.setdefault(name, value)
